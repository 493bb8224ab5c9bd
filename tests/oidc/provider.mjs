// A real OpenID provider for the dashboard sign-in tests (tests/fixture_oidc.py starts it).
//
// node provider.mjs [PORT]        (PORT 0 or absent: a free port)
//
// Environment:
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET  the one static confidential client
//   OIDC_REDIRECT_URIS                  its redirect URIs, comma separated (also its post-logout URIs)
//   OIDC_TTL_SECONDS                    lifetime of ID/access tokens, sessions, grants and interactions
//                                       (default 600), short so expiry can be tested
//   OIDC_UNVERIFIED                     logins (comma separated) whose email_verified is false
//
// It listens on 127.0.0.1 only and prints one JSON line on stdout when it is ready:
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT}
//
// Sign-in uses the provider's own development login and consent pages (real HTML forms). Any
// login name is accepted with any password, and becomes the account: logging in as
// alice@example.com gives sub, email and name claims from "alice@example.com".
import http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const env = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback === undefined) {
      console.error(`provider.mjs: ${name} is required`);
      process.exit(2);
    }
    return fallback;
  }
  return value;
};

const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');
const redirectUris = env('OIDC_REDIRECT_URIS').split(',').map((u) => u.trim()).filter(Boolean);
const ttl = Number.parseInt(env('OIDC_TTL_SECONDS', '600'), 10);
const unverified = new Set(env('OIDC_UNVERIFIED', '').split(',').map((u) => u.trim()).filter(Boolean));
const port = Number.parseInt(process.argv[2] ?? '0', 10);

// Streamlit's st.login sends prompt=select_account (Google's account chooser). oidc-provider only
// accepts prompts its policy can request, so the policy gets a select_account prompt that never
// asks anything itself, and the login prompt shows the login form again whenever an account
// selection was asked for: the same thing a provider with an account chooser does.
const policy = interactionPolicy.base();
const login = policy.get('login');
login.checks.add(new interactionPolicy.Check(
  'select_account',
  'account selection requested',
  'account_selection_required',
  (ctx) => (ctx.oidc.prompts.has('select_account') && !ctx.oidc.result?.login
    ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT),
), 0);
const selectAccount = new interactionPolicy.Prompt({ name: 'select_account', requestable: true });
selectAccount.checks.remove('select_account_prompt');
policy.add(selectAccount);

const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>`
  + `<body><h1>${title}</h1>${body}</body></html>`;

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    post_logout_redirect_uris: redirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: sub, email_verified: !unverified.has(sub), name: sub.split('@')[0] };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Put the scope's claims in the ID token, as Google, Microsoft and Okta do: Streamlit's st.user
  // is the ID token's claims (it does not call the userinfo endpoint).
  conformIdTokenClaims: false,
  interactions: { policy },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">`
          + 'Yes, sign me out</button><button type="submit" form="op.logoutForm">No, stay signed in</button>');
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre>${Object.entries(out).map(([k, v]) => `${k}: ${String(v).replace(/[<&]/g, '')}`)
      .join('\n')}</pre>`);
  },
  cookies: { keys: ['spendlog-test-provider-cookie-key'] },
  ttl: {
    AccessToken: ttl, AuthorizationCode: 60, IdToken: ttl, Session: ttl, Grant: ttl, Interaction: ttl,
  },
};

let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const issuer = `http://127.0.0.1:${actual}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  handler = provider.callback();
  console.log(JSON.stringify({ issuer, port: actual }));
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
