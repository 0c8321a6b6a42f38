import { CopyObjectCommand, type S3Client } from '@aws-sdk/client-s3';

/** CopyObject's limit: a larger object needs a multipart copy (UploadPartCopy). */
export const COPY_OBJECT_MAX = 5 * 1024 ** 3;

/**
 * One object copied inside the bucket by the server (CopyObject): no byte passes through the sidecar, and
 * like any PUT the new object appears only complete. Keys are full object keys (prefix included); the copy
 * source is URL-encoded per segment, as S3 requires.
 */
export async function copyInBucket(
  client: S3Client,
  bucket: string,
  from: string,
  to: string,
): Promise<void> {
  const source = `${bucket}/${from.split('/').map(encodeURIComponent).join('/')}`;
  await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: source }));
}
