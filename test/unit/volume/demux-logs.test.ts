import { describe, expect, it } from 'vitest';
import { demuxLogs } from '../../../src/volume/restore-volume.js';

/** Docker's log frames without a TTY: [stream, 0, 0, 0, length (4 bytes, big-endian)] then the payload. */
function frame(stream: number, text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

describe('demuxLogs', () => {
  it('strips the frame headers of stdout and stderr chunks, keeping their order', () => {
    const buf = Buffer.concat([frame(1, '1234\n'), frame(2, 'warning: x\n'), frame(1, 'done\n')]);
    expect(demuxLogs(buf)).toBe('1234\nwarning: x\ndone\n');
  });

  it('returns unframed text (a TTY container) as it is', () => {
    expect(demuxLogs(Buffer.from('plain output\n'))).toBe('plain output\n');
  });
});
