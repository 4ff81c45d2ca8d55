import { createSecureContext, type PeerCertificate, type SecureContextOptions } from 'node:tls';
import { watchFiles, type WatchedFiles } from './watched-files.js';

/** Where a TLS endpoint's PEM files are; each one optional. */
export interface TlsFilePaths {
  /** this side's certificate chain */
  readonly certFile?: string;
  /** the private key of `certFile` */
  readonly keyFile?: string;
  /** the certificates the other side's certificate must chain to (a private CA) */
  readonly caFile?: string;
}

/** PEM contents, ready for `tls.connect`, `http2.createSecureServer` or pg's `ssl`. */
export interface TlsMaterial {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
}

export interface WatchTlsFilesOptions {
  readonly paths: TlsFilePaths;
  /** how often the files are read again, ms; 0 never. Default 10 s. */
  readonly intervalMs?: number;
  readonly onChange?: (material: TlsMaterial) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * The PEM files of one TLS endpoint, re-read when they change. A certificate and key that do
 * not belong together, or a file that is not PEM, is refused (at start: a ConfigError; later:
 * onError, and the previous files stay in use).
 */
export function watchTlsFiles(options: WatchTlsFilesOptions): WatchedFiles<TlsMaterial> {
  const { certFile, keyFile, caFile } = options.paths;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new TypeError('a TLS certificate file needs its key file, and a key file its certificate file');
  }
  const fields: (keyof TlsMaterial)[] = [];
  const paths: string[] = [];
  for (const [field, path] of [['cert', certFile], ['key', keyFile], ['ca', caFile]] as const) {
    if (path === undefined) continue;
    fields.push(field);
    paths.push(path);
  }
  return watchFiles<TlsMaterial>({
    paths,
    parse: (contents) => {
      const material: Record<string, Buffer> = {};
      fields.forEach((field, index) => (material[field] = contents[index] as Buffer));
      checkTlsMaterial(material);
      return material;
    },
    ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    ...(options.onChange ? { onChange: options.onChange } : {}),
    ...(options.onError ? { onError: options.onError } : {}),
  });
}

/** Throws unless OpenSSL takes the material: PEM that parses, a key matching its certificate. */
export function checkTlsMaterial(material: TlsMaterial): void {
  for (const [field, pem] of Object.entries(material)) {
    if (pem !== undefined && !(pem as Buffer).includes('-----BEGIN ')) throw new Error(`the ${field} file holds no PEM block`);
  }
  createSecureContext(material as SecureContextOptions);
}

/**
 * The names a verified peer certificate vouches for: its subject CN, its DNS and URI subject
 * alternative names (a SPIFFE id is a URI). Empty for no certificate.
 */
export function certificateIdentities(certificate: PeerCertificate | undefined | null): string[] {
  if (!certificate || Object.keys(certificate).length === 0) return [];
  const names = new Set<string>();
  const cn = certificate.subject?.CN;
  for (const name of Array.isArray(cn) ? cn : cn ? [cn] : []) names.add(name);
  for (const entry of (certificate.subjectaltname ?? '').split(', ')) {
    const match = /^(DNS|URI):(.+)$/.exec(entry);
    if (match?.[2]) names.add(match[2]);
  }
  return [...names];
}
