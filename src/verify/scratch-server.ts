import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';
import { requireLocalImage } from '../docker/local-image.js';
import { demuxLogs } from '../volume/restore-volume.js';
import type { VerifyOptions } from './types.js';

/** What differs between the engines' throwaway servers; the sequence around it is the same. */
export interface ScratchServer {
  /** For messages: "the MariaDB server exited …". */
  engine: string;
  /** The engine's own container settings (command, user, environment) for the image and mount point. */
  container(image: Docker.ImageInspectInfo, mountedAt: string): Docker.ContainerCreateOptions;
  /** Run in the container until it exits 0: the server answers. */
  ready: string[];
  /** For the timeout message: "did not answer ping within …". */
  answer: string;
  pollMs: number;
}

/**
 * Starts the snapshot's own database image (as container `name`) on the scratch volume, without network
 * and labelled as a helper (crash recovery removes it if this process dies), waits until it answers, runs
 * `check` on it and always removes the container.
 */
export async function withScratchServer(
  o: VerifyOptions,
  m: Manifest,
  v: ManifestVolume,
  scratch: string,
  name: string,
  server: ScratchServer,
  check: (container: string, image: string) => Promise<string>,
): Promise<string> {
  const { svc, at } = datadirService(m, v);
  const info = await requireLocalImage(o.docker, svc, `volume ${v.name}: `);
  const own = server.container(info, at.destination);
  const c = await o.docker.createContainer({
    ...own,
    name,
    Image: svc.imageId,
    Labels: { [HELPER_LABEL]: helperOwner() },
    NetworkDisabled: true,
    HostConfig: {
      NetworkMode: 'none',
      // nocopy: Docker must not copy the image's files into the scratch volume.
      Binds: [`${scratch}:${at.destination}:nocopy`],
    },
  });
  try {
    await c.start();
    await waitUntilReady(o, c, v, server);
    return await check(c.id, svc.image);
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** The service that mounted the datadir volume when the snapshot was taken, and where. */
export function datadirService(m: Manifest, v: ManifestVolume) {
  const mount = v.mountedAt
    .map((at) => ({ at, svc: m.stack.services.find((s) => s.service === at.service) }))
    .find((x) => x.svc);
  if (!mount?.svc) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `volume ${v.name} holds a database datadir, but the manifest names no service that mounted it`,
    );
  }
  return { svc: mount.svc, at: mount.at };
}

async function waitUntilReady(
  o: VerifyOptions,
  c: Docker.Container,
  v: ManifestVolume,
  server: ScratchServer,
): Promise<void> {
  const timeout = o.dbStartTimeoutMs ?? 180_000;
  const end = Date.now() + timeout;
  let last = '';
  while (Date.now() < end) {
    o.signal?.throwIfAborted();
    const state = (await c.inspect()).State;
    if (!state.Running) {
      const logs = demuxLogs((await c.logs({ stdout: true, stderr: true, tail: 15 })) as unknown as Buffer);
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `volume ${v.name}: the ${server.engine} server exited (${state.ExitCode}) before answering: ${logs.trim().slice(-600)}`,
      );
    }
    const r = await execCapture(o.docker, c.id, server.ready, 10_000).catch((err: Error) => ({
      exitCode: -1,
      stdout: '',
      stderr: err.message,
    }));
    if (r.exitCode === 0) return;
    last = (r.stderr || r.stdout).trim();
    await sleep(server.pollMs);
  }
  throw new SidecarError(
    'INTEGRITY_FAILED',
    `volume ${v.name}: the ${server.engine} server did not ${server.answer} within ${timeout / 1000} s: ${last.slice(-300)}`,
  );
}
