import { LABELS } from '../docker/labels.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import type { SiteParts } from './site.js';

/**
 * What a snapshot taken now will lack because of how Moodle was (not) found: said at warn level in the log,
 * and carried into the manifest, /metrics and the success webhook.
 */
export function reportSite(stack: Stack, site: SiteParts, log: Logger): string[] {
  const m = site.moodle;
  if (!m) {
    const down = stack.containers.filter((c) => c.state !== 'running');
    const msg =
      `Moodle not found in project ${stack.project}: no admin/cli/maintenance.php (public/admin/cli/ from Moodle 5.1) ` +
      `in the running containers ${site.checked.containers.join(', ') || '(none)'} at ${site.checked.dirs.join(', ')}` +
      (down.length ? ` (not checked: ${down.map((c) => `${c.name} is ${c.state}`).join(', ')})` : '') +
      ". This snapshot is taken WITHOUT maintenance mode and WITHOUT Moodle's excludes. If Moodle runs here, " +
      `label its container ${LABELS.moodleDir}=<Moodle's directory, where config.php is>`;
    log.warn({ step: 'plan', checked: site.checked }, msg);
    return [msg];
  }
  log.info(
    {
      step: 'plan',
      container: m.container.name,
      root: m.root,
      cli: `${m.codeDir}/admin/cli`,
      user: m.user ?? 'default',
      dataroot: m.dataroot?.path ?? null,
      datarootFrom: m.dataroot?.source ?? null,
      datarootVolume: m.dataroot?.volume?.name ?? null,
      dbtype: m.dbtype,
    },
    `Moodle in ${m.container.name} at ${m.root}; its CLI runs as ${m.user ?? 'the container default user'} (${m.userSource})`,
  );
  const out: string[] = [];
  if (m.askError)
    out.push(
      `could not ask Moodle for its dataroot (php ${m.codeDir}/admin/cli/cfg.php --name=dataroot: ${m.askError}); ` +
        (m.dataroot
          ? `using ${m.dataroot.path}, the mount that holds filedir/`
          : "so Moodle's excludes are not applied"),
    );
  if (m.dataroot && !m.dataroot.volume)
    out.push(`Moodle's dataroot ${m.dataroot.path}: ${m.dataroot.note}; Moodle's excludes are not applied`);
  if (!m.dataroot && !m.askError)
    out.push("Moodle's dataroot was not found: Moodle's excludes are not applied");
  for (const w of out) log.warn({ step: 'plan', container: m.container.name }, w);
  return out;
}
