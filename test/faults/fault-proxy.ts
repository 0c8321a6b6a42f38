import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** The S3 operation of a path-style request, from its method and query (enough for what the sidecar sends). */
export type S3Op =
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'ListObjects'
  | 'DeleteObject'
  | 'Other';

export type Fault =
  /** Close the connection without an answer (the client sees ECONNRESET / socket hang up). */
  | { kind: 'reset' }
  /** Answer with an S3 error document. */
  | { kind: 'status'; status: number; code: string }
  /** Hold the request this long, then forward it. */
  | { kind: 'stall'; ms: number }
  /** Never answer: only the client's own timeout ends the request. */
  | { kind: 'hang' }
  /** Forward, with the request and response bodies limited to this many bytes per second. */
  | { kind: 'slow'; bytesPerSecond: number };

export interface Rule {
  op: S3Op | '*';
  fault: Fault;
  /** How many matching requests get the fault (Infinity: all of them). Requests before `skip` pass. */
  times: number;
  skip?: number;
}

export interface ProxyStats {
  requests: Record<string, number>;
  injected: number;
  /** Multipart uploads the server started, those the client completed, and those it sent an abort for. */
  initiated: Set<string>;
  completed: Set<string>;
  aborted: Set<string>;
}

export function classify(method: string, url: string): S3Op {
  const q = new URL(url, 'http://x').searchParams;
  const parts = new URL(url, 'http://x').pathname.split('/').filter(Boolean);
  const hasKey = parts.length > 1;
  if (method === 'POST' && q.has('uploads')) return 'CreateMultipartUpload';
  if (method === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'PUT' && q.has('partNumber')) return 'UploadPart';
  if (method === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'PUT' && hasKey) return 'PutObject';
  if (method === 'GET' && hasKey) return 'GetObject';
  if (method === 'HEAD' && hasKey) return 'HeadObject';
  if (method === 'GET' && !hasKey && (q.has('list-type') || q.has('prefix'))) return 'ListObjects';
  if (method === 'DELETE' && hasKey) return 'DeleteObject';
  return 'Other';
}

function throttle(bytesPerSecond: number): Transform {
  return new Transform({
    async transform(chunk: Buffer, _e, cb) {
      for (let i = 0; i < chunk.length; i += 16_384) {
        const piece = chunk.subarray(i, i + 16_384);
        await sleep((piece.length / bytesPerSecond) * 1000);
        this.push(piece);
      }
      cb();
    },
  });
}

/**
 * An HTTP proxy on 127.0.0.1 between the S3 client and the S3 protocol server, injecting faults by rule.
 * It also records every multipart upload the server started and whether the client completed or aborted it.
 * s3rver implements no AbortMultipartUpload (it answers 405), so the proxy answers an abort as S3 does
 * (204) and records it: the tests check that the sidecar sends the abort, which is what S3 needs.
 */
export class FaultProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private rules: (Rule & { seen: number; hits: number })[] = [];
  stats: ProxyStats = FaultProxy.emptyStats();
  port = 0;

  constructor(private readonly upstreamPort: number) {}

  static emptyStats(): ProxyStats {
    return { requests: {}, injected: 0, initiated: new Set(), completed: new Set(), aborted: new Set() };
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Replaces the rules and clears the statistics. */
  set(rules: Rule[]): void {
    this.rules = rules.map((r) => ({ ...r, seen: 0, hits: 0 }));
    this.stats = FaultProxy.emptyStats();
  }

  /** Multipart uploads that were neither completed nor aborted: parts left on the server. */
  orphans(): string[] {
    return [...this.stats.initiated].filter(
      (id) => !this.stats.completed.has(id) && !this.stats.aborted.has(id),
    );
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private pick(op: S3Op): Fault | undefined {
    for (const r of this.rules) {
      if (r.op !== '*' && r.op !== op) continue;
      r.seen++;
      if (r.seen <= (r.skip ?? 0) || r.hits >= r.times) continue;
      r.hits++;
      return r.fault;
    }
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const op = classify(req.method ?? 'GET', url);
    this.stats.requests[op] = (this.stats.requests[op] ?? 0) + 1;
    // An abort counts once the client sent it, whatever the server then answers.
    if (op === 'AbortMultipartUpload') {
      const id = new URL(url, 'http://x').searchParams.get('uploadId');
      if (id) this.stats.aborted.add(id);
    }
    const fault = this.pick(op);
    if (fault) this.stats.injected++;
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'hang') {
      req.resume();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      await new Promise((r) => req.on('end', r));
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>`;
      res.writeHead(fault.status, {
        'Content-Type': 'application/xml',
        'Content-Length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    if (fault?.kind === 'stall') await sleep(fault.ms);
    if (op === 'AbortMultipartUpload') {
      req.resume();
      res.writeHead(204);
      res.end();
      return;
    }
    const slow = fault?.kind === 'slow' ? fault.bytesPerSecond : undefined;
    await this.forward(req, res, op, slow);
  }

  private forward(req: IncomingMessage, res: ServerResponse, op: S3Op, slow?: number): Promise<void> {
    return new Promise((resolve) => {
      const up = request(
        {
          host: '127.0.0.1',
          port: this.upstreamPort,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          const chunks: Buffer[] = [];
          const record = op === 'CreateMultipartUpload' || op === 'CompleteMultipartUpload';
          if (record) answer.on('data', (c: Buffer) => chunks.push(c));
          answer.on('end', () => {
            const ok = (answer.statusCode ?? 500) < 300;
            if (record && ok) {
              const text = Buffer.concat(chunks).toString();
              if (op === 'CreateMultipartUpload') {
                const id = text.match(/<UploadId>([^<]+)<\/UploadId>/)?.[1];
                if (id) this.stats.initiated.add(id);
              } else if (!text.includes('<Error>')) {
                const id = new URL(req.url ?? '/', 'http://x').searchParams.get('uploadId');
                if (id) this.stats.completed.add(id);
              }
            }
            resolve();
          });
          (slow ? answer.pipe(throttle(slow)) : answer).pipe(res);
        },
      );
      up.on('error', () => {
        res.destroy();
        resolve();
      });
      req.on('error', () => up.destroy());
      (slow ? req.pipe(throttle(slow)) : req).pipe(up);
    });
  }
}
