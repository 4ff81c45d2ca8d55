export { startCosServer, type CosServerOptions, type RunningCosServer } from './cos-server.js';
