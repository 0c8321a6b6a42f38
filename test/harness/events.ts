import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { docker } from './docker.js';

export interface ContainerEvent {
  action: string;
  service: string;
  time: number;
}

interface RawEvent {
  Action: string;
  Actor: { Attributes: Record<string, string> };
  timeNano: number;
}

function toEvent(e: RawEvent): ContainerEvent {
  return {
    action: e.Action,
    service: e.Actor.Attributes['com.docker.compose.service'] ?? '?',
    time: e.timeNano,
  };
}

/**
 * Docker keeps only its last 256 events for `since` queries, and every `docker exec` of a busy test run adds
 * events, so older ones get evicted. Stacks therefore record their project's events live from creation on.
 */
const recorders = new Map<string, { events: ContainerEvent[]; stop(): void }>();

export async function startRecording(project: string, client: Docker = docker()): Promise<void> {
  const stream = (await client.getEvents({
    filters: { type: ['container'], label: [`com.docker.compose.project=${project}`] },
  })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  const events: ContainerEvent[] = [];
  let buf = '';
  stream.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) events.push(toEvent(JSON.parse(line) as RawEvent));
      nl = buf.indexOf('\n');
    }
  });
  stream.on('error', () => undefined);
  recorders.set(project, { events, stop: () => stream.destroy() });
}

export function stopRecording(project: string): void {
  recorders.get(project)?.stop();
  recorders.delete(project);
}

/** Docker events of one compose project between two moments, in order (exec events left out). */
export async function projectEvents(
  project: string,
  sinceMs: number,
  untilMs = Date.now(),
): Promise<ContainerEvent[]> {
  const rec = recorders.get(project);
  let events: ContainerEvent[];
  if (rec) {
    await sleep(500); // events arrive a moment after the API call that caused them
    events = rec.events.filter(
      // Nanosecond times from the recorder: no rounding down to the second, which let the previous test's
      // last events (a fast backup ends within the same second) into this window.
      (e) => e.time >= sinceMs * 1e6 && e.time <= (untilMs + 1000) * 1e6,
    );
  } else {
    const stream = (await docker().getEvents({
      since: Math.floor(sinceMs / 1000),
      until: Math.ceil(untilMs / 1000) + 1,
      filters: { type: ['container'], label: [`com.docker.compose.project=${project}`] },
    })) as unknown as NodeJS.ReadableStream;
    let text = '';
    for await (const chunk of stream) text += chunk.toString();
    events = text
      .split('\n')
      .filter(Boolean)
      .map((l) => toEvent(JSON.parse(l) as RawEvent));
  }
  return events.filter((e) => !e.action.startsWith('exec_'));
}

/** "action service" strings of the lifecycle events that matter for quiescing. */
export function lifecycle(events: ContainerEvent[]): string[] {
  const keep = new Set(['stop', 'start', 'pause', 'unpause', 'die', 'kill']);
  return events.filter((e) => keep.has(e.action)).map((e) => `${e.action} ${e.service}`);
}
