export { watchFiles, DEFAULT_RELOAD_INTERVAL_MS, type WatchedFiles, type WatchedFilesOptions } from './watched-files.js';
export {
  watchTlsFiles,
  checkTlsMaterial,
  certificateIdentities,
  type TlsFilePaths,
  type TlsMaterial,
  type WatchTlsFilesOptions,
} from './tls-material.js';
export { watchTokenFile, parseTokens, bearerToken, MIN_TOKEN_LENGTH, type TokenSet, type WatchTokenFileOptions } from './token-file.js';
