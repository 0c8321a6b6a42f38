/**
 * Path-style or virtual-host-style bucket addressing when the user did not choose (AWS_S3_PATH_STYLE unset).
 * offen/docker-volume-backup's S3 client (minio-go, "auto" lookup) uses virtual hosts only for the clouds that
 * serve `<bucket>.<host>` (AWS, Google Cloud Storage, Aliyun OSS) and path style for every other endpoint: a
 * self-hosted MinIO, Garage or Ceph at `minio.example.com` or `s3:9000` has no DNS name per bucket. We follow the
 * same rule so offen's settings work unchanged.
 */

/** AWS S3 hosts: s3[.-]…amazonaws.com (global, regional, dual-stack, FIPS) and China's s3.…amazonaws.com.cn. */
const AWS_S3_HOST = /^s3[.-]([a-z0-9-]+\.)*amazonaws\.com(\.cn)?$/;
/** AWS PrivateLink interface endpoints for S3. */
const AWS_PRIVATELINK_HOST = /^(bucket|accesspoint)\.vpce-[a-z0-9-]+\.s3\.[a-z0-9-]+\.vpce\.amazonaws\.com$/;

/** True when the host is one that serves buckets as subdomains (so virtual-host style works there). */
export function servesVirtualHosts(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  return (
    AWS_S3_HOST.test(host) ||
    AWS_PRIVATELINK_HOST.test(host) ||
    host === 'storage.googleapis.com' ||
    host === 'aliyuncs.com' ||
    host.endsWith('.aliyuncs.com')
  );
}

/**
 * Whether requests name the bucket in the path. An explicit choice wins; without an endpoint the SDK talks to
 * AWS, which takes virtual hosts (the SDK itself falls back to path style for names DNS cannot carry).
 */
export function usePathStyle(endpoint: string | undefined, forced: boolean | undefined): boolean {
  if (forced !== undefined) return forced;
  if (endpoint === undefined) return false;
  let hostname: string;
  try {
    hostname = new URL(endpoint).hostname;
  } catch {
    // The schema accepts only http(s) URLs; anything unparsable is not a cloud host.
    return true;
  }
  return !servesVirtualHosts(hostname);
}

/**
 * The hint for a DNS failure on `<bucket>.<host>`: the bucket was addressed as a subdomain that does not exist,
 * which path style avoids. undefined for any other error.
 */
export function virtualHostHint(
  bucket: string,
  code: string | undefined,
  message: string,
): string | undefined {
  if (code !== 'ENOTFOUND' || !message.includes(`ENOTFOUND ${bucket}.`)) return undefined;
  return (
    `the bucket was addressed as the host name ${bucket}.<endpoint>, which does not resolve: ` +
    'set AWS_S3_PATH_STYLE=true (forcePathStyle: true in a config file) for this S3 server'
  );
}
