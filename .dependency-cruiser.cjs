/**
 * The import rules `npm run lint` checks (dependency-cruiser). Folders are layers; each may import only
 * from the layers listed after it (docs/design.md, "Pipeline layout"), and no file may sit in a cycle.
 */
const LAYERS = [
  ['cli'],
  ['schedule'],
  ['backup', 'restore', 'verify', 'prune', 'recover'],
  ['database'],
  ['moodle'],
  ['stack'],
  ['volume'],
  ['observe'],
  ['archive', 'store'],
  ['storage'],
  ['retention', 'config'],
  ['docker'],
  ['common'],
];

const folder = (names) => `^src/(${names.join('|')})/`;

const upward = LAYERS.slice(1).map((layer, i) => ({
  name: `layer-${layer.join('-')}`,
  comment: `${layer.join(', ')} may not import from the layers above it`,
  severity: 'error',
  from: { path: folder(layer) },
  to: { path: folder(LAYERS.slice(0, i + 1).flat()) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle: split out what both sides need',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-loose-files',
      comment: 'every module belongs to a stage folder',
      severity: 'error',
      from: { path: '^src/[^/]+\\.ts$' },
      to: {},
    },
    ...upward,
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a cycle through types is still a cycle for a reader.
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/bench/' },
  },
};
