import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { describe, expect, it } from 'vitest';
import { createTestBucket, testS3Client } from '../harness/s3.js';

describe('test bed: S3 protocol server', () => {
  it('round-trips a multipart object through @aws-sdk/client-s3', async () => {
    const bucket = await createTestBucket('bed');
    const client = testS3Client();
    const body = randomBytes(13 * 1024 * 1024 + 123);
    const upload = new Upload({
      client,
      params: {
        Bucket: bucket,
        Key: 'dir/obj.bin',
        Body: Readable.from([body.subarray(0, 7e6), body.subarray(7e6)]),
      },
      partSize: 5 * 1024 * 1024,
      queueSize: 2,
    });
    let parts = 0;
    upload.on('httpUploadProgress', () => {
      parts++;
    });
    await upload.done();
    expect(parts).toBeGreaterThanOrEqual(3);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'dir/obj.bin' }));
    expect(head.ContentLength).toBe(body.length);
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/obj.bin' }));
    const bytes = Buffer.from(
      await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(
      createHash('sha256').update(body).digest('hex'),
    );
    client.destroy();
  });
});
