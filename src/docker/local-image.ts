import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { dockerStatus } from './client.js';

/**
 * The image a snapshot recorded for a service, which must be on this engine already: drills run the
 * snapshot's own database image and never pull (the registry may be unreachable, or serve a newer image).
 * `context` prefixes the error ("volume mariadb_data: ").
 */
export async function requireLocalImage(
  docker: Docker,
  svc: { image: string; imageId: string },
  context = '',
): Promise<Docker.ImageInspectInfo> {
  try {
    return await docker.getImage(svc.imageId).inspect();
  } catch (err) {
    if (dockerStatus(err) !== 404) throw err;
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${context}the database image ${svc.image} (${svc.imageId}) is not present locally; the drill never pulls`,
      `pull ${svc.image} first`,
    );
  }
}
