import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import type { Manifest, ManifestDatabase } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import { HELPER_LABEL, helperOwner } from '../docker/labels.js';
import { requireLocalImage } from '../docker/local-image.js';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import type { TableCheck } from './engine.js';
import { engineForDump } from './find.js';
import { loadDump } from './load.js';

export interface DumpDrillInput {
  docker: Docker;
  backend: Backend;
  log: Logger;
  manifest: Manifest;
  db: ManifestDatabase;
  encryption?: EncryptionConfig;
  signal?: AbortSignal;
  /** Name prefix of the scratch volume and container. */
  prefix: string;
  /** Watches the raw dump as it is loaded (the terminal's progress line). */
  progress?: NodeJS.ReadWriteStream;
}

/**
 * `verify --deep` for a dump: the snapshot's own database image on a fresh scratch volume (no network, a
 * random password only this container knows), the dump loaded as a restore loads it (rows per table
 * checked), then every table checked (`mariadb-check --all-databases`, `pg_amcheck --all`). Scratch parts
 * are always removed.
 */
export async function drillDump(i: DumpDrillInput): Promise<TableCheck> {
  const { docker, manifest: m, db } = i;
  const svc = m.stack.services.find((s) => s.service === db.service);
  if (!svc) {
    throw new SidecarError('INTEGRITY_FAILED', `the manifest names no service ${db.service} for the dump`);
  }
  await requireLocalImage(docker, svc);
  const tag = randomBytes(4).toString('hex');
  const scratch = `${i.prefix}-${tag}-${db.volume.name}`;
  await docker.createVolume({ Name: scratch, Labels: { [HELPER_LABEL]: helperOwner() } });
  const name = `${i.prefix}-${tag}-dump`;
  try {
    const c = await docker.createContainer({
      name,
      Image: svc.imageId,
      // Official and Bitnami images initialise an empty datadir from these (the dump's owner as user).
      Env: engineForDump(db.kind).scratchEnv(randomBytes(18).toString('base64url'), db.user),
      Labels: { [HELPER_LABEL]: helperOwner() },
      // NetworkMode none keeps loopback and a hostname, which first-start initialisation needs
      // (NetworkDisabled makes mariadb-install-db fail).
      HostConfig: { NetworkMode: 'none', Binds: [`${scratch}:${db.volume.destination}:nocopy`] },
    });
    try {
      return await loadAndCheck(i, { id: c.id, name });
    } finally {
      await c.remove({ force: true, v: true }).catch(() => undefined);
    }
  } finally {
    await docker
      .getVolume(scratch)
      .remove({ force: true })
      .catch(() => undefined);
  }
}

/** Loads the dump into the drill's server as a restore would, then checks every table. */
async function loadAndCheck(i: DumpDrillInput, c: { id: string; name: string }): Promise<TableCheck> {
  const { docker, manifest: m, db } = i;
  const source = await i.backend.get(`${m.id}/${db.file}`);
  try {
    await loadDump(docker, c, source, m, db, i.log, i.signal, i.encryption, i.progress);
  } finally {
    source.destroy();
  }
  return engineForDump(db.kind).checkAll(docker, c.id, 30 * 60_000);
}
