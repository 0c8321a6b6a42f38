import { describe, expect, it } from 'vitest';
import { ownContainerId } from '../../../src/common/container-id.js';

const ID = '886c0f7267af12d9c5bc1efd4397937a6a5bc7ffd54f786acaf854f7dec65239';
const OTHER = 'a'.repeat(64);

describe('ownContainerId', () => {
  it('is the container whose hostname file is mounted at /etc/hostname (inside a container)', () => {
    const info = [
      `132 111 254:0 /var/lib/docker/containers/${ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw`,
      `133 111 254:0 /var/lib/docker/containers/${ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw`,
    ].join('\n');
    expect(ownContainerId(info)).toBe(ID);
  });

  it("is none on the host while dockerd's archive API has another container's files mounted", () => {
    // Seen in the host's mountinfo during a getArchive/putArchive of a running test's helper container.
    const info = [
      '25 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
      `901 25 254:0 /var/lib/docker/containers/${OTHER}/hostname /var/lib/docker/overlay2/0f3e/merged/etc/hostname rw - ext4 /dev/vda rw`,
    ].join('\n');
    expect(ownContainerId(info)).toBeNull();
  });
});
