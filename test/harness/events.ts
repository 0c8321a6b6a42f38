import { docker } from './docker.js';

export interface ContainerEvent {
  action: string;
  service: string;
  time: number;
}

/** Docker events of one compose project between two moments (seconds precision from Docker), in order. */
export async function projectEvents(
  project: string,
  sinceMs: number,
  untilMs = Date.now(),
): Promise<ContainerEvent[]> {
  const stream = (await docker().getEvents({
    since: Math.floor(sinceMs / 1000),
    until: Math.ceil(untilMs / 1000) + 1,
    filters: { type: ['container'], label: [`com.docker.compose.project=${project}`] },
  })) as unknown as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter(Boolean)
    .map(
      (l) =>
        JSON.parse(l) as { Action: string; Actor: { Attributes: Record<string, string> }; timeNano: number },
    )
    .map((e) => ({
      action: e.Action,
      service: e.Actor.Attributes['com.docker.compose.service'] ?? '?',
      time: e.timeNano,
    }))
    .filter((e) => !e.action.startsWith('exec_'));
}

/** "action service" strings of the lifecycle events that matter for quiescing. */
export function lifecycle(events: ContainerEvent[]): string[] {
  const keep = new Set(['stop', 'start', 'pause', 'unpause', 'die', 'kill']);
  return events.filter((e) => keep.has(e.action)).map((e) => `${e.action} ${e.service}`);
}
