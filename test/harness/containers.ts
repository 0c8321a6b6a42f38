import type { ServiceContainer } from '../../src/stack/discover.js';

/** A discovered container of project `p` for pure planning tests: running, one volume `p_<service>_data`. */
export function container(service: string, opts: Partial<ServiceContainer> = {}): ServiceContainer {
  return {
    id: `id-${service}`,
    name: `p-${service}-1`,
    service,
    image: `img/${service}`,
    imageId: `sha256:${service}`,
    state: 'running',
    labels: {},
    dependsOn: [],
    mounts: [{ volume: `p_${service}_data`, destination: `/data/${service}` }],
    ...opts,
  };
}
