// Writes docs/openapi.json from the document the HTTP/JSON front end serves at GET /openapi.json
// (packages/grpc-api/src/openapi.ts); a test keeps the two equal.
// NODE_OPTIONS=--conditions=@chiefofstate/source npx tsx tools/scripts/openapi.ts
import { writeFileSync } from 'node:fs';
import { httpOpenApiDocument } from '@chiefofstate/grpc-api';

const target = new URL('../../docs/openapi.json', import.meta.url);
writeFileSync(target, `${JSON.stringify(httpOpenApiDocument(), null, 2)}\n`);
process.stdout.write(`docs/openapi.json written\n`);
