import { startS3rver } from './s3rver.js';

export interface BenchS3 {
  endpoint: string;
  bucket: string;
  /** Environment that points the sidecar at this server. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** s3rver on 127.0.0.1 with one bucket, and the settings (path-style, checksums when required) that suit it. */
export async function startS3(workDir: string): Promise<BenchS3> {
  const { endpoint, port, stop } = await startS3rver(workDir);
  const bucket = 'bench';
  try {
    // s3rver accepts unsigned requests: an anonymous PUT creates the bucket.
    const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
    if (!res.ok) throw new Error(`could not create bucket: ${res.status} ${await res.text()}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    endpoint,
    bucket,
    env: {
      AWS_S3_BUCKET_NAME: bucket,
      AWS_S3_PATH: 'bench',
      AWS_S3_PATH_STYLE: 'true',
      AWS_S3_CHECKSUMS: 'when_required',
      AWS_ENDPOINT: `127.0.0.1:${port}`,
      AWS_ENDPOINT_PROTO: 'http',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    },
    stop,
  };
}
