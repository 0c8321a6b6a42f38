import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { virtualHostHint } from '../../../src/storage/s3-addressing.js';
import { s3ClientConfig } from '../../../src/storage/s3-config.js';

/** The addressing the SDK client gets from offen-style variables, the way `backup` builds it. */
async function pathStyleFor(env: NodeJS.ProcessEnv): Promise<boolean | undefined> {
  const config = await loadConfig(
    { AWS_S3_BUCKET_NAME: 'moodle-backups', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', ...env },
    { defaultFile: '/nonexistent/config.yml' },
  );
  if (config.target.type !== 's3') throw new Error('expected an S3 target');
  return s3ClientConfig(config.target).forcePathStyle;
}

describe("bucket addressing without AWS_S3_PATH_STYLE follows offen's client (minio-go)", () => {
  it.each([
    // Clouds that serve <bucket>.<host>: virtual-host style.
    ['no endpoint (AWS)', {}, false],
    ["offen's default endpoint s3.amazonaws.com", { AWS_ENDPOINT: 's3.amazonaws.com' }, false],
    ['AWS regional', { AWS_ENDPOINT: 's3.eu-central-1.amazonaws.com' }, false],
    ['AWS regional, hyphen form', { AWS_ENDPOINT: 's3-eu-west-1.amazonaws.com' }, false],
    ['AWS external-1', { AWS_ENDPOINT: 's3-external-1.amazonaws.com' }, false],
    ['AWS dual-stack', { AWS_ENDPOINT: 's3.dualstack.us-east-1.amazonaws.com' }, false],
    ['AWS FIPS', { AWS_ENDPOINT: 's3-fips.us-east-2.amazonaws.com' }, false],
    ['AWS China', { AWS_ENDPOINT: 's3.cn-north-1.amazonaws.com.cn' }, false],
    ['AWS PrivateLink', { AWS_ENDPOINT: 'bucket.vpce-0a1b2c3d-4e5f.s3.us-east-1.vpce.amazonaws.com' }, false],
    ['Google Cloud Storage', { AWS_ENDPOINT: 'storage.googleapis.com' }, false],
    ['Aliyun OSS', { AWS_ENDPOINT: 'oss-cn-hangzhou.aliyuncs.com' }, false],
    ['upper-case host', { AWS_ENDPOINT: 'S3.EU-CENTRAL-1.AMAZONAWS.COM' }, false],
    // Everything else: path style.
    ["offen's MinIO recipe", { AWS_ENDPOINT: 'minio.example.com' }, true],
    ['service name and port over http', { AWS_ENDPOINT: 'minio:9000', AWS_ENDPOINT_PROTO: 'http' }, true],
    ['IPv4 and port', { AWS_ENDPOINT: '192.168.1.20:9000', AWS_ENDPOINT_PROTO: 'http' }, true],
    ['localhost', { AWS_ENDPOINT: 'localhost:9000', AWS_ENDPOINT_PROTO: 'http' }, true],
    ['a look-alike of AWS', { AWS_ENDPOINT: 's3.amazonaws.com.example.net' }, true],
    ['another AWS service', { AWS_ENDPOINT: 'elb.us-east-1.amazonaws.com' }, true],
    ['Garage on a sub-domain', { AWS_ENDPOINT: 's3.garage.example.org' }, true],
  ])('%s', async (_name, env: NodeJS.ProcessEnv, pathStyle) => {
    expect(await pathStyleFor(env)).toBe(pathStyle);
  });
});

describe('AWS_S3_PATH_STYLE forces either way', () => {
  it.each([
    ['true on AWS', { AWS_S3_PATH_STYLE: 'true' }, true],
    ['true on Google', { AWS_ENDPOINT: 'storage.googleapis.com', AWS_S3_PATH_STYLE: 'true' }, true],
    ['false on MinIO', { AWS_ENDPOINT: 'minio.example.com', AWS_S3_PATH_STYLE: 'false' }, false],
    ['false on an IP', { AWS_ENDPOINT: '10.0.0.5:9000', AWS_S3_PATH_STYLE: 'false' }, false],
  ])('%s', async (_name, env: NodeJS.ProcessEnv, pathStyle) => {
    expect(await pathStyleFor(env)).toBe(pathStyle);
  });
});

describe('a bucket host that does not resolve', () => {
  it('names the setting', () => {
    const hint = virtualHostHint('backups', 'ENOTFOUND', 'getaddrinfo ENOTFOUND backups.minio.example.com');
    expect(hint).toContain('AWS_S3_PATH_STYLE=true');
    expect(hint).toContain('backups.<endpoint>');
  });

  it('says nothing about addressing when the endpoint itself does not resolve', () => {
    expect(
      virtualHostHint('backups', 'ENOTFOUND', 'getaddrinfo ENOTFOUND minio.example.com'),
    ).toBeUndefined();
    expect(virtualHostHint('backups', 'ECONNREFUSED', 'connect ECONNREFUSED backups.x:9000')).toBeUndefined();
  });
});
