import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import type { S3Target } from '../../src/config/types.js';
import { cliEnv, type TempDirs } from './config.js';
import type { MoodleStack } from './stack.js';

/** Client options s3rver needs (see ENVIRONMENT.md): path style and checksums only when required. */
export function testS3Client(): S3Client {
  const s3 = inject('s3');
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A fresh bucket for one test file (or test), with a unique name. */
export async function createTestBucket(tag = 'b'): Promise<string> {
  const name = `mbst-${tag}-${Math.random().toString(36).slice(2, 10)}`.toLowerCase();
  const client = testS3Client();
  await client.send(new CreateBucketCommand({ Bucket: name }));
  client.destroy();
  return name;
}

/** An S3 target config pointing at the test server. */
export function testS3Target(bucket: string, prefix = 'moodle'): S3Target {
  const s3 = inject('s3');
  return {
    type: 's3',
    bucket,
    prefix,
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    requestChecksumCalculation: 'when_required',
    responseChecksumValidation: 'when_required',
    partSize: 5 * 1024 * 1024,
    queueSize: 4,
  };
}

/** CLI environment for an S3 target at `endpoint` (host:port), e.g. the test server or a fault proxy. */
export function s3Env(
  stack: MoodleStack,
  dirs: TempDirs,
  bucket: string,
  endpoint: string,
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const s3 = inject('s3');
  const env = cliEnv(stack.project, dirs, {
    AWS_S3_BUCKET_NAME: bucket,
    AWS_S3_PATH: 'moodle',
    AWS_ENDPOINT: endpoint,
    AWS_ENDPOINT_PROTO: 'http',
    AWS_S3_PATH_STYLE: 'true',
    AWS_S3_CHECKSUMS: 'when_required',
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    ...extra,
  });
  delete env.BACKUP_ARCHIVE;
  return env;
}

/** host:port of the test S3 server. */
export function s3Host(): string {
  return new URL(inject('s3').endpoint).host;
}
