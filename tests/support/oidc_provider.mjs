// A real OpenID provider for the tests: node oidc-provider (OpenID Certified), installed by
// tests/support/oidc.py into a cache folder (OIDC_PROVIDER_MODULES = its node_modules).
// Clients and audiences come from the JSON file named by the first argument:
//   {port, audience, clients: [...], resources: {client_id: audience}, ttl: {client_id: s},
//    kids: [key ids]}
// Access tokens are JWTs (RFC 9068) for the client's resource (its audience), signed RS256.
// The device flow (with PKCE) and its login/consent pages are oidc-provider's own
// (devInteractions: any login name, any password). Prints "ready <issuer>" when listening.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(process.env.OIDC_PROVIDER_MODULES + '/');
const { default: Provider } = await import(require.resolve('oidc-provider'));
const { generateKeyPair, exportJWK } = await import(require.resolve('jose'));

const conf = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${conf.port}`;
const keys = [];
for (const kid of conf.kids || ['k1']) {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  keys.push({ ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' });
}
const ttlOf = (client) => (conf.ttl && client && conf.ttl[client.clientId]) || 600;
const provider = new Provider(issuer, {
  clients: conf.clients,
  jwks: { keys },
  scopes: ['openid', 'offline_access', 'openeo'],
  claims: { openid: ['sub'] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client) =>
        (conf.resources && client && conf.resources[client.clientId]) || conf.audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource, client) => ({
        scope: 'openid openeo offline_access',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttlOf(client),
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  pkce: { required: () => false },
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: { DeviceCode: 600, RefreshToken: 3600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(conf.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
