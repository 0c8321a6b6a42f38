import type { Readable } from 'node:stream';
import type Docker from 'dockerode';

/** Every bench resource carries this label (value: the bench run's id) and a name starting with the prefix. */
export const BENCH_LABEL = 'mbs.bench';

export interface BenchService {
  service: string;
  /** Short volume names and where the service mounts them. */
  mounts: Record<string, string>;
  dependsOn?: string;
  /** A shell command run as it stops (a database server writes its files at shutdown). */
  onStop?: string;
}

export interface BenchStack {
  project: string;
  /** Docker volume name by short name. */
  volumes: Record<string, string>;
  /** Host directory of each volume (its Mountpoint), by short name. */
  dirs: Record<string, string>;
}

/**
 * A Compose-like project: `<project>_<volume>` volumes and long-running containers labelled as
 * `docker compose up` labels them, so the sidecar discovers and quiesces them as it would a Moodle stack.
 * The containers exit at once on SIGTERM, so the measured downtime is the sidecar's, not a stop timeout.
 */
export async function createBenchStack(
  docker: Docker,
  runId: string,
  project: string,
  image: string,
  volumes: string[],
  services: BenchService[],
): Promise<BenchStack> {
  const stack: BenchStack = { project, volumes: {}, dirs: {} };
  for (const v of volumes) {
    const name = `${project}_${v}`;
    await docker.createVolume({
      Name: name,
      Labels: {
        'com.docker.compose.project': project,
        'com.docker.compose.volume': v,
        [BENCH_LABEL]: runId,
      },
    });
    stack.volumes[v] = name;
    stack.dirs[v] = (await docker.getVolume(name).inspect()).Mountpoint;
  }
  for (const s of services) {
    await docker.createContainer({
      name: `${project}-${s.service}-1`,
      Image: image,
      Entrypoint: ['sh', '-c', `trap "${s.onStop ? `${s.onStop}; ` : ''}exit 0" TERM; sleep 100000 & wait`],
      Cmd: [],
      Labels: {
        'com.docker.compose.project': project,
        'com.docker.compose.service': s.service,
        'com.docker.compose.container-number': '1',
        'com.docker.compose.oneoff': 'False',
        ...(s.dependsOn ? { 'com.docker.compose.depends_on': `${s.dependsOn}:service_started:false` } : {}),
        [BENCH_LABEL]: runId,
      },
      NetworkDisabled: true,
      HostConfig: {
        Binds: Object.entries(s.mounts).map(([v, path]) => `${stack.volumes[v]}:${path}`),
        NetworkMode: 'none',
      },
    });
  }
  return stack;
}

/** Starts the stack's containers (after the data was written into the volumes' directories). */
export async function startBenchStack(docker: Docker, runId: string, project: string): Promise<void> {
  const list = await docker.listContainers({
    all: true,
    filters: { label: [`${BENCH_LABEL}=${runId}`, `com.docker.compose.project=${project}`] },
  });
  for (const c of list) await docker.getContainer(c.Id).start();
}

/** Removes every container and volume of this bench run, whatever state they are in. */
export async function removeBenchResources(docker: Docker, runId: string): Promise<void> {
  const filters = { label: [`${BENCH_LABEL}=${runId}`] };
  const containers = await docker.listContainers({ all: true, filters });
  await Promise.all(
    containers.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => undefined),
    ),
  );
  const { Volumes } = await docker.listVolumes({ filters });
  for (const v of Volumes ?? []) {
    await docker
      .getVolume(v.Name)
      .remove({ force: true })
      .catch(() => undefined);
  }
}

interface ContainerEvent {
  action: string;
  project: string;
  name: string;
  timeMs: number;
}

/**
 * Records container stop/start events of the bench projects live (the daemon keeps only a few hundred),
 * so downtime comes from Docker's own clock, not from the sidecar's report.
 */
export class EventRecorder {
  private readonly events: ContainerEvent[] = [];
  private stream: Readable | undefined;

  async start(docker: Docker, runId: string): Promise<void> {
    this.stream = (await docker.getEvents({
      filters: { type: ['container'], label: [`${BENCH_LABEL}=${runId}`] },
    })) as unknown as Readable;
    let buf = '';
    this.stream.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (!line) continue;
        const e = JSON.parse(line) as {
          Action: string;
          timeNano: number;
          Actor: { Attributes: Record<string, string> };
        };
        this.events.push({
          action: e.Action,
          project: e.Actor.Attributes['com.docker.compose.project'] ?? '',
          name: e.Actor.Attributes.name ?? '',
          timeMs: e.timeNano / 1e6,
        });
      }
    });
    this.stream.on('error', () => undefined);
  }

  stop(): void {
    this.stream?.destroy();
  }

  /**
   * Downtime of a project within [fromMs, toMs]: from the first container leaving the running state (kill,
   * die, stop, pause) to the last one running again (start, unpause). Null when nothing stopped.
   */
  downtime(project: string, fromMs: number, toMs: number): { ms: number; endMs: number } | null {
    const mine = this.events.filter((e) => e.project === project && e.timeMs >= fromMs && e.timeMs <= toMs);
    const down = mine.filter((e) => ['kill', 'die', 'stop', 'pause'].includes(e.action));
    const up = mine.filter((e) => ['start', 'unpause'].includes(e.action));
    if (down.length === 0) return null;
    const first = Math.min(...down.map((e) => e.timeMs));
    const last = up.length ? Math.max(...up.map((e) => e.timeMs)) : toMs;
    return { ms: last - first, endMs: last };
  }
}
