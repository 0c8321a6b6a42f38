import type { S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Target } from '../config/types.js';
import { usePathStyle } from './s3-addressing.js';

function checksumMode(v: 'when_supported' | 'when_required'): 'WHEN_SUPPORTED' | 'WHEN_REQUIRED' {
  return v === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
}

const SILENT = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** SDK client options from the target; static keys only when both are set, else the default provider chain. */
export function s3ClientConfig(target: S3Target): S3ClientConfig {
  return {
    region: target.region,
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    forcePathStyle: usePathStyle(target.endpoint, target.forcePathStyle),
    ...(target.accessKeyId && target.secretAccessKey
      ? { credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey } }
      : {}),
    requestChecksumCalculation: checksumMode(target.requestChecksumCalculation),
    responseChecksumValidation: checksumMode(target.responseChecksumValidation),
    // The SDK writes to the console when no logger is set (e.g. "non-retryable streaming request", which the
    // file upload retries itself): that would break the one-JSON-object-per-line log.
    logger: SILENT,
    // The SDK's default is to wait forever (and, with a timeout set, only to warn): a server that stops
    // answering would hang the run. requestTimeout is idle time on the socket, so a slow but moving upload
    // is never cut off; the timeout is a retryable TimeoutError.
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: (target.requestTimeoutSeconds ?? 120) * 1000,
      throwOnRequestTimeout: true,
    },
  };
}
