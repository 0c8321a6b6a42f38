import { tmpdir } from 'node:os';
import { startS3rver } from '../../src/bench/s3rver.js';

export { freePort } from '../../src/bench/s3rver.js';

export interface S3Server {
  endpoint: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/** s3rver (src/bench/s3rver.ts): one server for the whole test run, its data in the system's temp directory. */
export async function startS3Server(): Promise<S3Server> {
  // Containers reach it by a service name: path-style buckets only.
  const server = await startS3rver(tmpdir(), ['--no-vhost-buckets']);
  return { ...server, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
}
