// A test OpenID Connect provider that, as far as a relying party can see,
// behaves like AWS Cognito's hosted UI: the code flow with PKCE (S256 only),
// confidential clients, the user's attributes in the ID token, a refresh token
// with every code, and RP-initiated logout. Built on oidc-provider.
//
// Start
//   node tests/peers/oidc/server.mjs '{"clients":[{"client_id":"app","client_secret":"s",
//     "redirect_uris":["http://..."],"post_logout_redirect_uris":["http://..."]}]}'
// Any other client metadata given there goes to oidc-provider as it is. The
// server listens on an ephemeral port of 127.0.0.1 and prints one line to
// stdout, {"issuer":"http://127.0.0.1:<port>"}; its logs go to stderr. It exits
// when its stdin reaches end of file, so keep a pipe to it open, or on SIGTERM.
//
// Signing in with an HTTP client that keeps cookies (they are path-scoped and
// each has a ".sig" twin; send them all back):
//  1. GET /oauth2/authorize?client_id=&redirect_uri=&response_type=code
//         &scope=openid+email+profile&state=&nonce=&code_challenge=&code_challenge_method=S256
//     -> 303, Location: /interaction/<uid> (relative to the issuer). Sets
//     _interaction (path /interaction/<uid>) and _interaction_resume (path
//     /oauth2/authorize/<uid>). Without a code_challenge, or with "plain", the
//     303 goes to redirect_uri with error=invalid_request.
//  2. GET /interaction/<uid> shows the login form; an HTTP client may skip it.
//  3. POST /interaction/<uid>, form-encoded: prompt=login, login=<any name>,
//     password=<anything; not checked, may be left out>
//     -> 303, Location: <issuer>/oauth2/authorize/<uid>
//  4. GET that -> 303, Location: <redirect_uri>?code=<code>&state=<state>&iss=<issuer>
//     and sets _session (path /). There is no consent page. While _session
//     lives, step 1 answers with this redirect at once.
//  5. POST /oauth2/token, form-encoded: grant_type=authorization_code, code,
//     redirect_uri, code_verifier; the client authenticates with HTTP Basic
//     (client_secret_basic) or with client_id and client_secret in the form
//     (client_secret_post). -> 200 {access_token, id_token, refresh_token,
//     expires_in, scope, token_type}
//  Refresh: POST /oauth2/token, grant_type=refresh_token, refresh_token, with
//  the same client authentication -> the same without refresh_token: the one
//  held stays valid.
//
// Signing out (end_session_endpoint, /logout)
//  GET /logout?id_token_hint=&post_logout_redirect_uri=&state= (client_id may
//  stand for id_token_hint; Cognito's logout_uri is taken for
//  post_logout_redirect_uri, which must be registered) -> 200, an HTML form
//  that a browser submits by itself. An HTTP client posts its fields, xsrf and
//  logout=yes, form-encoded to <issuer>/logout/confirm, with the _session
//  cookie (the GET sets one if there was none) -> 303, Location:
//  <post_logout_redirect_uri>?state=<state>.
//
// Accounts
//  Login name X has sub = a UUID made from sha256(X), cognito:username = X,
//  email = X@example.com, email_verified = "true" (a string, as Cognito sends
//  it), name = X, and cognito:groups only when it is in a group. Scope openid
//  brings sub, cognito:username and cognito:groups into the ID token and the
//  userinfo answer; email brings email and email_verified; profile, name.
//
// Control API for tests (JSON in and out; bad input gets 400 {"error": "..."})
//  POST /__control/accounts {"login", "groups", "email", "email_verified", "sub", "name"}
//    Overrides for one login name, replacing any given before; all but login
//    optional. Answers {"login", "claims"}.
//  POST /__control/tamper {"mode": null | "aud" | "iss" | "expired" | "unknown-kid"
//                                | "alg-none" | "hs256" | "userinfo-sub"}
//    From then on, every ID token that the token endpoint returns is altered:
//    aud "another-client" without azp, iss "http://evil.example", or iat 2 h
//    and exp 1 h ago, each signed with the current key; signed by a key that
//    the JWKS does not publish; alg "none" with no signature; HS256 with the
//    client's secret. "userinfo-sub" leaves tokens alone and gives userinfo a
//    different sub. null stops it.
//  POST /__control/rotate
//    A new signing key signs from then on; the JWKS publishes it and every
//    older one. Answers {"kid": <new>, "kids": [<published, newest first>]}.
//  GET /__control/stats -> {"jwks_fetches": n, "token_requests": n}
//    Requests to the JWKS and token endpoints since the start.

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
import {
  SignJWT, base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK,
} from 'jose';

// stdout carries the issuer line and nothing else, but oidc-provider prints its
// notices with console.info.
console.info = console.error;
console.log = console.error;

// Cognito's hosted UI paths, so that nothing in a relying party may lean on
// oidc-provider's own defaults instead of the discovery document.
const ROUTES = {
  authorization: '/oauth2/authorize',
  token: '/oauth2/token',
  userinfo: '/oauth2/userInfo',
  jwks: '/.well-known/jwks.json',
  revocation: '/oauth2/revoke',
  end_session: '/logout',
};

const TAMPER_MODES = new Set(['aud', 'iss', 'expired', 'unknown-kid', 'alg-none', 'hs256', 'userinfo-sub']);
const ACCOUNT_FIELDS = new Set(['login', 'groups', 'email', 'email_verified', 'sub', 'name']);

class BadRequest extends Error {}

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

function parseConfig(argument) {
  let config;
  try {
    config = JSON.parse(argument ?? '');
  } catch (err) {
    fail(`the first argument must be JSON: ${err.message}`);
  }
  if (!Array.isArray(config?.clients) || config.clients.length === 0) {
    fail('the configuration needs a non-empty "clients" array');
  }
  for (const client of config.clients) {
    for (const field of ['client_id', 'client_secret']) {
      if (typeof client?.[field] !== 'string' || client[field] === '') {
        fail(`every client needs a non-empty string "${field}"`);
      }
    }
    if (!Array.isArray(client.redirect_uris) || client.redirect_uris.length === 0) {
      fail(`client ${client.client_id} needs a non-empty "redirect_uris" array`);
    }
  }
  return config;
}

const config = parseConfig(process.argv[2]);
const clientsById = new Map(config.clients.map((client) => [client.client_id, client]));

const state = {
  // Newest first: oidc-provider signs with the first key that fits.
  keys: [],
  tamper: null,
  accounts: new Map(), // login name -> overrides from the control API
  loginsBySub: new Map(), // every sub handed out -> its login name
  stats: { jwks_fetches: 0, token_requests: 0 },
};

async function newSigningKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return {
    ...await exportJWK(privateKey), kid: randomUUID(), alg: 'RS256', use: 'sig',
  };
}

// Cognito subs are random v4 UUIDs; a hash keeps them stable across runs.
function uuidFrom(text) {
  const h = createHash('sha256').update(text).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function subFor(login) {
  const sub = state.accounts.get(login)?.sub ?? uuidFrom(`stagedoor-test-user:${login}`);
  state.loginsBySub.set(sub, login);
  return sub;
}

function claimsFor(login, sub) {
  const overrides = state.accounts.get(login) ?? {};
  const claims = {
    sub,
    'cognito:username': login,
    email: overrides.email ?? `${login}@example.com`,
    // Cognito sends this as a string.
    email_verified: overrides.email_verified ?? 'true',
    name: overrides.name ?? login,
  };
  // Cognito leaves the claim out for a user in no group.
  if (overrides.groups?.length) {
    claims['cognito:groups'] = [...overrides.groups];
  }
  return claims;
}

// Account ids are subs: oidc-provider puts the account id in "sub", and
// handleRequest turns the typed login name into one before it gets here.
async function findAccount(ctx, id) {
  const login = state.loginsBySub.get(id);
  if (login === undefined) {
    return undefined;
  }
  return {
    accountId: id,
    async claims() {
      return claimsFor(login, id);
    },
  };
}

// Cognito asks no consent of its app clients: grant whatever was asked for.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  const grant = (grantId && await oidc.provider.Grant.find(grantId))
    || new oidc.provider.Grant({ accountId: oidc.session.accountId, clientId: oidc.client.clientId });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

// Like Cognito's /logout, sign out without asking; a browser submits the form
// by itself, an HTTP client posts its fields.
async function logoutSource(ctx, form) {
  ctx.body = `<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Signing out</title>
<script>document.addEventListener('DOMContentLoaded', function () { document.forms[0].submit() });</script>
</head>
<body>${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>')}</body>
</html>`;
}

async function signRs256(header, payload, jwk = state.keys[0]) {
  return new SignJWT(payload)
    .setProtectedHeader({ ...header, alg: 'RS256', kid: jwk.kid })
    .sign(await importJWK(jwk, 'RS256'));
}

async function tamperIdToken(idToken) {
  const header = decodeProtectedHeader(idToken);
  const payload = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  switch (state.tamper) {
    case 'aud':
      payload.aud = 'another-client';
      delete payload.azp;
      return signRs256(header, payload);
    case 'iss':
      payload.iss = 'http://evil.example';
      return signRs256(header, payload);
    case 'expired':
      payload.iat = now - 2 * 3600;
      payload.exp = now - 3600;
      return signRs256(header, payload);
    case 'unknown-kid':
      return signRs256(header, payload, await newSigningKey());
    case 'alg-none': {
      const encode = (value) => base64url.encode(JSON.stringify(value));
      return `${encode({ alg: 'none' })}.${encode(payload)}.`;
    }
    case 'hs256': {
      const audience = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
      const secret = clientsById.get(audience).client_secret;
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(secret));
    }
    default:
      return idToken;
  }
}

async function tokenResponseMiddleware(ctx, next) {
  await next();
  if (typeof ctx.body !== 'object' || ctx.body === null) {
    return;
  }
  // oidc-provider repeats the refresh token it was given; Cognito sends none.
  if (ctx.path === ROUTES.token && ctx.oidc?.params?.grant_type === 'refresh_token') {
    delete ctx.body.refresh_token;
  }
  if (!state.tamper) {
    return;
  }
  if (ctx.path === ROUTES.token && typeof ctx.body.id_token === 'string') {
    ctx.body = { ...ctx.body, id_token: await tamperIdToken(ctx.body.id_token) };
  } else if (ctx.path === ROUTES.userinfo && state.tamper === 'userinfo-sub' && ctx.body.sub) {
    ctx.body = { ...ctx.body, sub: uuidFrom(`someone-else:${ctx.body.sub}`) };
  }
}

// oidc-provider's own memory adapter keeps one store per provider instance;
// this one is shared, so that sessions, codes and tokens outlive a rotation,
// which builds a new provider.
const store = new Map(); // "Model:id" -> { payload, expiresAt }
const GRANT_BOUND = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  static live(key) {
    const entry = store.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry?.payload;
  }

  findBy(field, value) {
    for (const [key, { payload }] of store) {
      if (key.startsWith(`${this.model}:`) && payload[field] === value) {
        return SharedMemoryAdapter.live(key);
      }
    }
    return undefined;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(`${this.model}:${id}`, { payload, expiresAt });
  }

  async find(id) {
    return SharedMemoryAdapter.live(`${this.model}:${id}`);
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) {
      payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    store.delete(`${this.model}:${id}`);
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of store) {
      if (GRANT_BOUND.has(key.slice(0, key.indexOf(':'))) && payload.grantId === grantId) {
        store.delete(key);
      }
    }
  }
}

// Likewise the keys that sign its cookies.
const cookieKeys = [randomBytes(32).toString('base64url')];
let issuer;
let current; // { provider, callback }

// oidc-provider reads its signing keys once, so a rotation builds a new one.
function buildProvider() {
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      post_logout_redirect_uris: [],
      // Cognito's ID tokens always carry auth_time.
      require_auth_time: true,
      ...client,
    })),
    jwks: { keys: state.keys },
    adapter: SharedMemoryAdapter,
    cookies: { keys: cookieKeys },
    routes: ROUTES,
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    findAccount,
    loadExistingGrant,
    claims: {
      openid: ['sub', 'cognito:username', 'cognito:groups'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Cognito puts the user's attributes in the ID token itself.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    // Cognito hands out a refresh token with every code, offline_access or not,
    // keeps it when it is used, and does not end it with the browser session.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: false,
    expiresWithSession: async () => false,
    // Cognito's defaults.
    ttl: {
      AuthorizationCode: 5 * 60,
      // A test may shorten it ("access_token_ttl") to exercise the refresh grant.
      AccessToken: Number.isInteger(config.access_token_ttl) ? config.access_token_ttl : 3600,
      IdToken: 3600,
      RefreshToken: 30 * 24 * 3600,
      Grant: 30 * 24 * 3600,
      Session: 24 * 3600,
      Interaction: 3600,
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource },
      revocation: { enabled: true },
      // Not in Cognito; off so that a relying party cannot come to need them.
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
    },
  });
  provider.use(tokenResponseMiddleware);
  provider.on('server_error', (ctx, err) => console.error(err));
  return { provider, callback: provider.callback() };
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    size += chunk.length;
    if (size > 64 * 1024) {
      throw new BadRequest('request body too large');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req) {
  const text = await readBody(req);
  if (text.trim() === '') {
    return {};
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequest(`body is not JSON: ${err.message}`);
  }
}

function parseAccount(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest('expected a JSON object');
  }
  for (const key of Object.keys(body)) {
    if (!ACCOUNT_FIELDS.has(key)) {
      throw new BadRequest(`unknown field "${key}"; known: ${[...ACCOUNT_FIELDS].join(', ')}`);
    }
  }
  const {
    login, groups, email, email_verified: emailVerified, sub, name,
  } = body;
  if (typeof login !== 'string' || login === '') {
    throw new BadRequest('"login" must be a non-empty string');
  }
  if (groups !== undefined && !(Array.isArray(groups) && groups.every((g) => typeof g === 'string'))) {
    throw new BadRequest('"groups" must be an array of strings');
  }
  for (const [field, value] of [['email', email], ['name', name]]) {
    if (value !== undefined && typeof value !== 'string') {
      throw new BadRequest(`"${field}" must be a string`);
    }
  }
  // A boolean is let through so that tests can see a relying party cope with
  // providers that send one.
  if (emailVerified !== undefined && !['string', 'boolean'].includes(typeof emailVerified)) {
    throw new BadRequest('"email_verified" must be a string or a boolean');
  }
  if (sub !== undefined && (typeof sub !== 'string' || sub === '')) {
    throw new BadRequest('"sub" must be a non-empty string');
  }
  return {
    login, groups, email, email_verified: emailVerified, sub, name,
  };
}

const control = {
  'POST /__control/accounts': async (req) => {
    const { login, ...overrides } = parseAccount(await readJson(req));
    state.accounts.set(login, overrides);
    const sub = subFor(login);
    return { login, claims: claimsFor(login, sub) };
  },
  'POST /__control/tamper': async (req) => {
    const body = await readJson(req);
    const mode = body?.mode;
    if (typeof body !== 'object' || body === null || !(mode === null || TAMPER_MODES.has(mode))) {
      throw new BadRequest(`"mode" must be null or one of: ${[...TAMPER_MODES].join(', ')}`);
    }
    state.tamper = mode;
    return { mode };
  },
  'POST /__control/rotate': async () => {
    state.keys.unshift(await newSigningKey());
    current = buildProvider();
    return { kid: state.keys[0].kid, kids: state.keys.map((key) => key.kid) };
  },
  'GET /__control/stats': async () => state.stats,
};

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function handleControl(req, res, pathname) {
  const action = control[`${req.method} ${pathname}`];
  if (!action) {
    const known = Object.keys(control).join(', ');
    sendJson(res, 404, { error: `no control action ${req.method} ${pathname}; known: ${known}` });
    return;
  }
  try {
    sendJson(res, 200, await action(req));
  } catch (err) {
    if (err instanceof BadRequest) {
      sendJson(res, 400, { error: err.message });
    } else {
      throw err;
    }
  }
}

async function handleRequest(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/__control/')) {
    await handleControl(req, res, url.pathname);
    return;
  }
  if (url.pathname === ROUTES.jwks) state.stats.jwks_fetches += 1;
  if (url.pathname === ROUTES.token) state.stats.token_requests += 1;

  // The login form's name becomes the account id, which oidc-provider uses
  // as "sub"; swap it for the account's sub before the provider reads it.
  // oidc-provider takes an already parsed body from req.body.
  if (
    req.method === 'POST'
    && /^\/interaction\/[^/]+$/.test(url.pathname)
    && req.headers['content-type']?.toLowerCase().startsWith('application/x-www-form-urlencoded')
  ) {
    const form = new URLSearchParams(await readBody(req));
    if (form.get('prompt') === 'login' && form.get('login')) {
      form.set('login', subFor(form.get('login')));
    }
    req.body = Object.fromEntries(form);
  }

  // Cognito's /logout names the return address logout_uri.
  if (
    url.pathname === ROUTES.end_session
    && url.searchParams.has('logout_uri')
    && !url.searchParams.has('post_logout_redirect_uri')
  ) {
    url.searchParams.set('post_logout_redirect_uri', url.searchParams.get('logout_uri'));
    url.searchParams.delete('logout_uri');
    req.url = `${url.pathname}${url.search}`;
  }

  await current.callback(req, res);
}

const server = createServer((req, res) => {
  if (!current) {
    sendJson(res, 503, { error: 'starting' });
    return;
  }
  handleRequest(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) {
      sendJson(res, err instanceof BadRequest ? 400 : 500, { error: err.message });
    } else {
      res.destroy();
    }
  });
});

// The test that spawned us holds our stdin; when it goes away, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

state.keys.push(await newSigningKey());
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
issuer = `http://127.0.0.1:${server.address().port}`;
current = buildProvider();
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
