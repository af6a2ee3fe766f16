// A certified OpenID Provider (oidc-provider) for the server's OpenID
// Connect tests: one client, a static user store and sign-in pages simple
// enough for a test's HTTP client to fill in.
//
// Usage: node provider.mjs [PORT]   (or OIDC_PORT; 0 or absent picks a free port)
// Environment:
//   OIDC_CLIENT_ID      client id (default "sealtrail"); ID-public is also
//                       registered, as a public client (no secret)
//   OIDC_CLIENT_SECRET  client secret (default "sealtrail-secret")
//   OIDC_REDIRECT_URI   the one registered redirect URI
//                       (default "http://127.0.0.1:8080/auth/oidc/callback")
// Once listening it prints its issuer URL, alone on a line, on stdout.
//
// Sign-in: GET /interaction/UID shows a form; POST /interaction/UID with
// `login=ACCOUNT` signs that account in and grants every scope asked for
// (no consent page). Accounts are in ACCOUNTS below.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const ACCOUNTS = {
  alice: {
    preferred_username: 'alice',
    email: 'alice@example.com',
    sealtrail_role: 'auditor',
    sealtrail_tenant: 'acme',
  },
  bob: { preferred_username: 'bob', email: 'bob@example.com', sealtrail_role: 'admin' },
  // No preferred_username: the relying party falls back to the e-mail address.
  carol: { email: 'carol@example.com', sealtrail_role: 'viewer', sealtrail_tenant: 'globex' },
  // No role at all.
  dave: { preferred_username: 'dave', email: 'dave@example.com' },
  // A role Sealtrail does not know.
  erin: { preferred_username: 'erin', email: 'erin@example.com', sealtrail_role: 'superuser' },
  // Roles as a list (groups, app roles): one Sealtrail role among others...
  frank: { preferred_username: 'frank', sealtrail_role: ['staff', 'auditor'] },
  // ...or two.
  grace: { preferred_username: 'grace', sealtrail_role: ['admin', 'viewer'] },
};

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const clientId = process.env.OIDC_CLIENT_ID ?? 'sealtrail';
const clientSecret = process.env.OIDC_CLIENT_SECRET ?? 'sealtrail-secret';
const redirectUri = process.env.OIDC_REDIRECT_URI ?? 'http://127.0.0.1:8080/auth/oidc/callback';

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html><head><title>Test provider</title></head><body>${body}</body></html>`);
}

function form(uid, error) {
  return `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label>Account <input name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>
<p>Accounts: ${Object.keys(ACCOUNTS).map(escape).join(', ')}</p>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Only the issuer line goes to stdout; the provider's notices go to stderr.
console.log = console.error;
console.info = console.error;

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // A public client: no secret, PKCE alone.
        client_id: `${clientId}-public`,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: ['sealtrail-test-provider-cookie-key'] },
    scopes: ['openid', 'profile', 'email', 'sealtrail'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username'],
      email: ['email'],
      sealtrail: ['sealtrail_role', 'sealtrail_tenant'],
    },
    // Put the granted claims in the ID token, where the relying party reads them.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const claims = ACCOUNTS[id];
      if (!claims) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
    },
    // Every scope asked for is granted: the sign-in page is the only interaction.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
      await grant.save();
      return grant;
    },
  });
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    const match = /^\/interaction\/([^/?]+)$/.exec(new URL(req.url, issuer).pathname);
    if (!match) {
      callback(req, res);
      return;
    }
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== match[1]) {
        page(res, 400, '<p>This sign-in page belongs to another attempt.</p>');
      } else if (req.method === 'GET') {
        page(res, 200, form(details.uid));
      } else if (req.method === 'POST') {
        const login = (await readForm(req)).get('login') ?? '';
        if (!Object.hasOwn(ACCOUNTS, login)) {
          page(res, 200, form(details.uid, `No account named ${login}.`));
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: login } }, {
          mergeWithLastSubmission: false,
        });
      } else {
        page(res, 405, '<p>GET or POST only.</p>');
      }
    } catch (err) {
      page(res, 400, `<p>${escape(err.message)}</p>`);
    }
  });

  process.stdout.write(`${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
