import {
  AbortMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type CreateMultipartUploadCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { MultipartRecord, UploadLedger } from './backend.js';

/** The fields of an SDK service error we read; anything thrown may lack them. */
interface ServiceErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function errorCode(err: unknown): string {
  const e = typeof err === 'object' && err !== null ? (err as ServiceErrorShape) : {};
  return e.Code ?? e.code ?? e.name ?? 'Error';
}

/**
 * Sends AbortMultipartUpload. Resolves with undefined when the upload is gone (aborted now, or NoSuchUpload:
 * completed or aborted before), else with a note for the user: its parts stay stored (and billed) until a
 * lifecycle rule removes them.
 */
export async function abortUpload(
  client: S3Client,
  u: Pick<MultipartRecord, 'bucket' | 'key' | 'uploadId'>,
): Promise<string | undefined> {
  try {
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: u.bucket, Key: u.key, UploadId: u.uploadId }),
    );
    return undefined;
  } catch (err) {
    const status = (err as ServiceErrorShape | null)?.$metadata?.httpStatusCode;
    if (errorCode(err) === 'NoSuchUpload' || status === 404) return undefined;
    return `the server did not abort multipart upload ${u.uploadId} (${errorCode(err)}); add a lifecycle rule that removes incomplete multipart uploads`;
  }
}

/**
 * Tells a put's ledger about each multipart upload the moment the server has started it, before lib-storage
 * sends a part (lib-storage has no hook there, so this is a middleware on the client's CreateMultipartUpload).
 * Many servers (s3rver among them) cannot list unfinished uploads, so this record is the only way a run
 * killed mid-upload can have its parts removed.
 */
export class MultipartTracker {
  /** Object key → the ledger of the put writing it. */
  private readonly ledgers = new Map<string, UploadLedger>();

  constructor(
    private readonly client: S3Client,
    private readonly endpoint: string,
  ) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'CreateMultipartUploadCommand') {
          await this.started(
            args.input as CreateMultipartUploadCommandInput,
            result.output as CreateMultipartUploadCommandOutput,
          );
        }
        return result;
      },
      { step: 'initialize', name: 'recordMultipartUploadStart' },
    );
  }

  /** Routes the uploads started for `key` to `ledger` until the returned function is called. */
  watch(key: string, ledger: UploadLedger | undefined): () => void {
    if (!ledger) return () => undefined;
    this.ledgers.set(key, ledger);
    return () => {
      if (this.ledgers.get(key) === ledger) this.ledgers.delete(key);
    };
  }

  private async started(
    input: CreateMultipartUploadCommandInput,
    output: CreateMultipartUploadCommandOutput,
  ): Promise<void> {
    const ledger = input.Key ? this.ledgers.get(input.Key) : undefined;
    if (!ledger || !input.Key || !input.Bucket || !output.UploadId) return;
    const u = { bucket: input.Bucket, key: input.Key, uploadId: output.UploadId, endpoint: this.endpoint };
    try {
      await ledger.uploadStarted(u);
    } catch (err) {
      // Failing here, lib-storage never learns the id and cannot abort it: do it now, then fail the put.
      await abortUpload(this.client, u);
      throw err;
    }
  }
}
