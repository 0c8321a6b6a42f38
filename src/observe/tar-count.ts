/**
 * Counts the regular files in a tar stream as it passes, reading only the 512-byte headers (the file bodies
 * are skipped by their size). For the progress line only: on anything it does not understand (no ustar
 * magic, a bad checksum) it stops counting rather than guess.
 */
export class TarFileCounter {
  files = 0;
  private skip = 0;
  private header = Buffer.alloc(0);
  private broken = false;

  get ok(): boolean {
    return !this.broken;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (!this.broken && at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const need = 512 - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + need)]);
      at += Math.min(need, chunk.length - at);
      if (this.header.length === 512) {
        this.read(this.header);
        this.header = Buffer.alloc(0);
      }
    }
  }

  private read(h: Buffer): void {
    if (h.every((b) => b === 0)) return; // end-of-archive blocks
    if (h.toString('latin1', 257, 262) !== 'ustar' || !checksumOk(h)) {
      this.broken = true;
      return;
    }
    const type = String.fromCharCode(h[156] ?? 0);
    if (type === '0' || type === '\0' || type === '7') this.files++;
    this.skip = Math.ceil(sizeOf(h) / 512) * 512;
  }
}

function sizeOf(h: Buffer): number {
  // GNU's base-256 form for sizes past 8 GiB: high bit set, big-endian binary.
  if (((h[124] ?? 0) & 0x80) !== 0) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + (h[i] ?? 0);
    return n;
  }
  return Number.parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]/g, '') || '0', 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] ?? 0);
  return sum === Number.parseInt(h.toString('latin1', 148, 156).replace(/[\0 ]/g, ''), 8);
}
