/**
 * A small stand-in for `kustomize build`, for tests (kustomize is not installed here): it reads a
 * kustomization's `resources` (files and other kustomizations), then applies what the overlays of
 * this repository use — `namespace`, `images`, `labels` and strategic-merge `patches` — and
 * returns the resulting objects. Strategic merge follows Kubernetes' rules for the lists these
 * manifests patch: containers, env, ports, volumes and volume mounts merge by their key; any other
 * list is replaced; an object merges field by field. Anything else in a kustomization is refused,
 * so an overlay cannot silently use a feature this loader ignores.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

interface Kustomization {
  resources?: string[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  labels?: { pairs: Record<string, string> }[];
  patches?: { path: string }[];
}

/** Kinds without a namespace: `namespace:` leaves them alone, as kustomize does. */
const CLUSTER_SCOPED = new Set(['Namespace', 'PriorityClass', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass']);

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'labels', 'patches']);

/** Merge keys of the lists the manifests patch (as in Kubernetes' strategic merge patch). */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  ports: 'containerPort',
  volumes: 'name',
  volumeMounts: 'mountPath',
};

/** Every YAML document of a file, parsed (empty documents dropped); throws on a YAML error. */
export function readYamlDocuments(path: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  const list = Array.isArray(docs) ? docs : [docs];
  return list.flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    return value === null || value === undefined ? [] : [value];
  });
}

/** The objects `kustomize build dir` would produce (for the features listed above). */
export function kustomizeBuild(dir: string): KubeObject[] {
  const file = join(dir, 'kustomization.yaml');
  const [k] = readYamlDocuments(file) as Kustomization[];
  if (!k) throw new Error(`${file} is empty`);
  for (const key of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(key)) throw new Error(`${file}: field ${key} is not supported by this loader`);
  }
  let objects: KubeObject[] = [];
  for (const resource of k.resources ?? []) {
    const path = join(dir, resource);
    if (!existsSync(path)) throw new Error(`${file}: resource ${resource} does not exist`);
    objects.push(...(statSync(path).isDirectory() ? kustomizeBuild(path) : (readYamlDocuments(path) as KubeObject[])));
  }
  for (const { path } of k.patches ?? []) {
    for (const patch of readYamlDocuments(join(dir, path)) as KubeObject[]) {
      const index = objects.findIndex(
        (o) => o.kind === patch.kind && o.apiVersion === patch.apiVersion && o.metadata.name === patch.metadata.name,
      );
      if (index < 0) throw new Error(`${file}: patch ${path} targets ${patch.kind}/${patch.metadata.name}, not found`);
      objects[index] = strategicMerge(objects[index], patch) as KubeObject;
    }
  }
  for (const { pairs } of k.labels ?? []) {
    objects = objects.map((o) => ({ ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, ...pairs } } }));
  }
  if (k.namespace) {
    const namespace = k.namespace;
    objects = objects.map((o) => (CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace } }));
  }
  for (const image of k.images ?? []) {
    for (const o of objects) {
      for (const c of containersOf(o)) {
        const [name, tag] = splitImage(c.image);
        if (name !== image.name) continue;
        c.image = `${image.newName ?? name}${image.newTag ? `:${image.newTag}` : tag ? `:${tag}` : ''}`;
      }
    }
  }
  return objects;
}

/** The containers of a workload's pod template (none for other kinds). */
export function containersOf(o: KubeObject): { name: string; image: string; [key: string]: unknown }[] {
  const spec = (o.spec as { template?: { spec?: { containers?: unknown[] } } } | undefined)?.template?.spec;
  return (spec?.containers ?? []) as { name: string; image: string }[];
}

function splitImage(image: string): [string, string | undefined] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Kubernetes' strategic merge of `patch` onto `base` (for the lists in {@link MERGE_KEYS}). */
export function strategicMerge(base: unknown, patch: unknown, field = ''): unknown {
  if (isObject(base) && isObject(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(patch))
      out[key] = key in base ? strategicMerge(base[key], value, key) : value;
    return out;
  }
  const mergeKey = MERGE_KEYS[field];
  if (Array.isArray(base) && Array.isArray(patch) && mergeKey) {
    const out = base.map((item) => structuredClone(item) as unknown);
    for (const item of patch) {
      const key = isObject(item) ? item[mergeKey] : undefined;
      const at = out.findIndex((b) => isObject(b) && b[mergeKey] === key);
      if (at >= 0) out[at] = strategicMerge(out[at], item);
      else out.push(item);
    }
    return out;
  }
  return structuredClone(patch);
}
