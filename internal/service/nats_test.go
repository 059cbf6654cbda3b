package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/natstest"
)

// natsConfig returns the default nats.* config pointed at url.
func natsConfig(url string) config.NATS {
	c := config.Default().NATS
	c.URL = url
	c.ConnectTimeout = 2 * time.Second
	return c
}

// requireValid checks that n passes config validation, so that what the test
// connects with is something falbridge would accept at start.
func requireValid(t *testing.T, n config.NATS) {
	t.Helper()
	c := config.Default()
	c.NATS = n
	require.NoError(t, c.Validate())
}

// connect dials with NATSOptions(c) and closes the connection when the test
// ends.
func connect(t *testing.T, c config.NATS) (*nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(c.URL, NATSOptions(c)...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// requireJetStream creates a KV bucket over nc and round-trips a value.
func requireJetStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "auth_check", Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	e, err := kv.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value()))
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// userSeed returns a fresh user nkey's public key and seed.
func userSeed(t *testing.T) (string, []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	return pub, seed
}

// operator is a JWT trust chain (operator → accounts → users) and the server
// option that trusts it.
type operator struct {
	claims   *jwt.OperatorClaims
	kp       nkeys.KeyPair
	resolver *server.MemAccResolver
}

// newOperator creates an operator with a system account (JetStream needs
// one in operator mode).
func newOperator(t *testing.T) *operator {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	sysKP, err := nkeys.CreateAccount()
	require.NoError(t, err)
	sysPub, err := sysKP.PublicKey()
	require.NoError(t, err)
	oc := jwt.NewOperatorClaims(pub)
	oc.SystemAccount = sysPub
	token, err := oc.Encode(kp)
	require.NoError(t, err)
	claims, err := jwt.DecodeOperatorClaims(token)
	require.NoError(t, err)
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(kp)
	require.NoError(t, err)
	op := &operator{claims: claims, kp: kp, resolver: &server.MemAccResolver{}}
	require.NoError(t, op.resolver.Store(sysPub, sysJWT))
	return op
}

// credsFile formats a creds file like jwt.FormatUserConfig, without its
// check that the seed is the JWT subject's.
func credsFile(userJWT string, seed []byte) []byte {
	return fmt.Appendf(nil, `-----BEGIN NATS USER JWT-----
%s
------END NATS USER JWT------

-----BEGIN USER NKEY SEED-----
%s
------END USER NKEY SEED------
`, userJWT, seed)
}

// account creates a JetStream-enabled account, registered with the resolver
// when trusted.
func (op *operator) account(t *testing.T, trusted bool) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	ac := jwt.NewAccountClaims(pub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	token, err := ac.Encode(op.kp)
	require.NoError(t, err)
	if trusted {
		require.NoError(t, op.resolver.Store(pub, token))
	}
	return kp
}

// creds returns a creds file for a new user of account; with wrongSeed its
// seed belongs to another user than its JWT.
func (op *operator) creds(t *testing.T, account nkeys.KeyPair, wrongSeed bool) []byte {
	t.Helper()
	pub, seed := userSeed(t)
	token, err := jwt.NewUserClaims(pub).Encode(account)
	require.NoError(t, err)
	if wrongSeed {
		_, seed = userSeed(t)
	}
	return credsFile(token, seed)
}

func (op *operator) serverOption(o *server.Options) {
	o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
	o.SystemAccount = op.claims.SystemAccount
	o.AccountResolver = op.resolver
}

// pki is a CA and the PEM files of certificates it issued, generated per
// test.
type pki struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	dir   string
	pool  *x509.CertPool
	caPEM string // CA certificate file
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	dir := t.TempDir()
	return &pki{
		cert: cert, key: key, dir: dir, pool: pool,
		caPEM: writeFile(t, dir, name+"-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err)
	return n
}

// issue signs a leaf certificate; hosts are its DNS names and IPs. It returns
// the certificate and key files and the parsed pair.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage, hosts ...string) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return writeFile(t, p.dir, name+".pem", certPEM), writeFile(t, p.dir, name+"-key.pem", keyPEM), pair
}

// serverTLS makes the server require TLS with cert; with clientCAs it also
// requires and verifies a client certificate issued by them.
func serverTLS(cert tls.Certificate, clientCAs *x509.CertPool) natstest.Option {
	return func(o *server.Options) {
		o.TLS = true
		o.TLSTimeout = 2
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if clientCAs != nil {
			o.TLSVerify = true
			o.TLSConfig.ClientCAs = clientCAs
			o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
}

// TestNATSOptionsAuth connects to a server requiring each authentication
// method: the right credentials connect and use JetStream, wrong or missing
// ones are refused.
func TestNATSOptionsAuth(t *testing.T) {
	t.Parallel()

	type setup struct {
		server natstest.Option
		// good are the auth fields of a config the server accepts.
		good func(*config.NATS)
		// bad are configs the server must refuse, by name.
		bad map[string]func(*config.NATS)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) setup
	}{
		{
			name: "user and password",
			setup: func(*testing.T, string) setup {
				return setup{
					server: func(o *server.Options) {
						o.Users = []*server.User{{Username: "bridge", Password: "s3cret-pass"}}
					},
					good: func(c *config.NATS) { c.User, c.Password = "bridge", "s3cret-pass" },
					bad: map[string]func(*config.NATS){
						"wrong password": func(c *config.NATS) { c.User, c.Password = "bridge", "not-the-pass" },
						"unknown user":   func(c *config.NATS) { c.User, c.Password = "other", "s3cret-pass" },
						"none":           func(*config.NATS) {},
					},
				}
			},
		},
		{
			name: "token",
			setup: func(*testing.T, string) setup {
				return setup{
					server: func(o *server.Options) { o.Authorization = "t0ken-value" },
					good:   func(c *config.NATS) { c.Token = "t0ken-value" },
					bad: map[string]func(*config.NATS){
						"wrong token": func(c *config.NATS) { c.Token = "t0ken-wrong" },
						"none":        func(*config.NATS) {},
					},
				}
			},
		},
		{
			name: "nkey seed file",
			setup: func(t *testing.T, dir string) setup {
				pub, seed := userSeed(t)
				_, otherSeed := userSeed(t)
				good := writeFile(t, dir, "user.nk", seed)
				other := writeFile(t, dir, "other.nk", otherSeed)
				return setup{
					server: func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} },
					good:   func(c *config.NATS) { c.NKeySeedFile = good },
					bad: map[string]func(*config.NATS){
						"wrong seed": func(c *config.NATS) { c.NKeySeedFile = other },
						"none":       func(*config.NATS) {},
					},
				}
			},
		},
		{
			name: "creds file",
			setup: func(t *testing.T, dir string) setup {
				op := newOperator(t)
				acc := op.account(t, true)
				good := writeFile(t, dir, "user.creds", op.creds(t, acc, false))
				mismatched := writeFile(t, dir, "mismatched.creds", op.creds(t, acc, true))
				untrusted := writeFile(t, dir, "untrusted.creds", op.creds(t, op.account(t, false), false))
				foreign := newOperator(t)
				foreignCreds := writeFile(t, dir, "foreign.creds", foreign.creds(t, foreign.account(t, true), false))
				return setup{
					server: op.serverOption,
					good:   func(c *config.NATS) { c.CredsFile = good },
					bad: map[string]func(*config.NATS){
						"seed does not match jwt":     func(c *config.NATS) { c.CredsFile = mismatched },
						"account unknown to server":   func(c *config.NATS) { c.CredsFile = untrusted },
						"account of another operator": func(c *config.NATS) { c.CredsFile = foreignCreds },
						"none":                        func(*config.NATS) {},
					},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := tt.setup(t, t.TempDir())
			s := natstest.Run(t, st.server)

			good := natsConfig(s.ClientURL())
			st.good(&good)
			requireValid(t, good)
			nc, err := connect(t, good)
			require.NoError(t, err)
			requireJetStream(t, nc)

			for name, bad := range st.bad {
				c := natsConfig(s.ClientURL())
				bad(&c)
				_, err := connect(t, c)
				require.ErrorIs(t, err, nats.ErrAuthorization, name)
			}
		})
	}
}

// TestNATSOptionsTLS connects to TLS servers: the CA file, client
// certificate and server name decide whether the handshake succeeds.
func TestNATSOptionsTLS(t *testing.T) {
	t.Parallel()

	const serverName = "nats.falbridge.test"
	tests := []struct {
		name string
		// certHosts are the server certificate's names.
		certHosts []string
		// verify makes the server require a client certificate.
		verify bool
		// users adds user/password auth on top of TLS.
		users bool
		// tls picks the client's nats.tls.* (and auth) settings.
		tls func(t *testing.T, c *config.NATS, trusted, untrusted *pki)
		// wantErr is part of the connect error; "" means success.
		wantErr string
	}{
		{
			name:      "ca file",
			certHosts: []string{"127.0.0.1", "localhost"},
			tls:       func(_ *testing.T, c *config.NATS, p, _ *pki) { c.TLS.CAFile = p.caPEM },
		},
		{
			name:      "untrusted ca",
			certHosts: []string{"127.0.0.1", "localhost"},
			tls:       func(_ *testing.T, c *config.NATS, _, other *pki) { c.TLS.CAFile = other.caPEM },
			wantErr:   "certificate signed by unknown authority",
		},
		{
			name:      "system roots do not trust a private ca",
			certHosts: []string{"127.0.0.1", "localhost"},
			tls:       func(*testing.T, *config.NATS, *pki, *pki) {},
			wantErr:   "certificate signed by unknown authority",
		},
		{
			name:      "client certificate",
			certHosts: []string{"127.0.0.1", "localhost"},
			verify:    true,
			tls: func(t *testing.T, c *config.NATS, p, _ *pki) {
				c.TLS.CAFile = p.caPEM
				c.TLS.CertFile, c.TLS.KeyFile, _ = p.issue(t, "client", x509.ExtKeyUsageClientAuth)
			},
		},
		{
			name:      "missing client certificate",
			certHosts: []string{"127.0.0.1", "localhost"},
			verify:    true,
			tls:       func(_ *testing.T, c *config.NATS, p, _ *pki) { c.TLS.CAFile = p.caPEM },
			wantErr:   "tls", // "remote error: tls: certificate required" or a closed connection, by timing
		},
		{
			name:      "client certificate from untrusted ca",
			certHosts: []string{"127.0.0.1", "localhost"},
			verify:    true,
			tls: func(t *testing.T, c *config.NATS, p, other *pki) {
				c.TLS.CAFile = p.caPEM
				c.TLS.CertFile, c.TLS.KeyFile, _ = other.issue(t, "client", x509.ExtKeyUsageClientAuth)
			},
			wantErr: "tls",
		},
		{
			name:      "server name",
			certHosts: []string{serverName},
			tls: func(t *testing.T, c *config.NATS, p, _ *pki) {
				c.TLS.CAFile = p.caPEM
				c.TLS.ServerName = serverName
			},
		},
		{
			name:      "server name needed when the certificate does not name the url host",
			certHosts: []string{serverName},
			tls:       func(_ *testing.T, c *config.NATS, p, _ *pki) { c.TLS.CAFile = p.caPEM },
			wantErr:   "doesn't contain any IP SANs",
		},
		{
			name:      "wrong server name",
			certHosts: []string{"127.0.0.1", "localhost"},
			tls: func(t *testing.T, c *config.NATS, p, _ *pki) {
				c.TLS.CAFile = p.caPEM
				c.TLS.ServerName = serverName
			},
			wantErr: "not " + serverName,
		},
		{
			name:      "server name with client certificate and password",
			certHosts: []string{serverName},
			verify:    true,
			users:     true,
			tls: func(t *testing.T, c *config.NATS, p, _ *pki) {
				c.TLS.CAFile = p.caPEM
				c.TLS.ServerName = serverName
				c.TLS.CertFile, c.TLS.KeyFile, _ = p.issue(t, "client", x509.ExtKeyUsageClientAuth)
				c.User, c.Password = "bridge", "s3cret-pass"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca, other := newPKI(t, "trusted"), newPKI(t, "untrusted")
			_, _, serverCert := ca.issue(t, "server", x509.ExtKeyUsageServerAuth, tt.certHosts...)
			var clientCAs *x509.CertPool
			if tt.verify {
				clientCAs = ca.pool
			}
			opts := []natstest.Option{serverTLS(serverCert, clientCAs)}
			if tt.users {
				opts = append(opts, func(o *server.Options) {
					o.Users = []*server.User{{Username: "bridge", Password: "s3cret-pass"}}
				})
			}
			s := natstest.Run(t, opts...)

			c := natsConfig(s.ClientURL())
			tt.tls(t, &c, ca, other)
			requireValid(t, c)
			nc, err := connect(t, c)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			state, err := nc.TLSConnectionState()
			require.NoError(t, err)
			require.True(t, state.HandshakeComplete)
			requireJetStream(t, nc)
		})
	}
}

// TestNATSOptionsFileErrors checks that an unusable file is reported under
// its config key when connecting, before any server is dialled.
func TestNATSOptionsFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := writeFile(t, dir, "garbage", []byte("not a key, not a cert\n"))
	missing := filepath.Join(dir, "missing")
	accountKP, err := nkeys.CreateAccount()
	require.NoError(t, err)
	accountSeed, err := accountKP.Seed()
	require.NoError(t, err)
	accountSeedFile := writeFile(t, dir, "account.nk", accountSeed)
	ca := newPKI(t, "ca")
	certFile, keyFile, _ := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	_, otherKeyFile, _ := ca.issue(t, "other", x509.ExtKeyUsageClientAuth)
	op := newOperator(t)
	creds := op.creds(t, op.account(t, true), false)
	jwtPart, _, ok := strings.Cut(string(creds), "-----BEGIN USER NKEY SEED-----")
	require.True(t, ok)
	noSeedCreds := writeFile(t, dir, "noseed.creds", []byte(jwtPart))

	// A certificate and its key are loaded together; either may be at fault.
	const certKeys = "nats.tls.cert_file, nats.tls.key_file"
	tests := []struct {
		name    string
		set     func(*config.NATS)
		wantKey string // the error starts with wantKey + ": "
	}{
		{"missing nkey seed file", func(c *config.NATS) { c.NKeySeedFile = missing }, "nats.nkey_seed_file"},
		{"garbage nkey seed file", func(c *config.NATS) { c.NKeySeedFile = garbage }, "nats.nkey_seed_file"},
		{"account seed as nkey seed file", func(c *config.NATS) { c.NKeySeedFile = accountSeedFile }, "nats.nkey_seed_file"},
		{"missing creds file", func(c *config.NATS) { c.CredsFile = missing }, "nats.creds_file"},
		{"garbage creds file", func(c *config.NATS) { c.CredsFile = garbage }, "nats.creds_file"},
		{"creds file without seed", func(c *config.NATS) { c.CredsFile = noSeedCreds }, "nats.creds_file"},
		{"missing ca file", func(c *config.NATS) { c.TLS.CAFile = missing }, "nats.tls.ca_file"},
		{"garbage ca file", func(c *config.NATS) { c.TLS.CAFile = garbage }, "nats.tls.ca_file"},
		{"missing cert file", func(c *config.NATS) { c.TLS.CertFile, c.TLS.KeyFile = missing, keyFile }, certKeys},
		{"garbage key file", func(c *config.NATS) { c.TLS.CertFile, c.TLS.KeyFile = certFile, garbage }, certKeys},
		{"key file of another certificate", func(c *config.NATS) { c.TLS.CertFile, c.TLS.KeyFile = certFile, otherKeyFile }, certKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Nothing listens here: the error must come from the options.
			c := natsConfig("nats://127.0.0.1:1")
			tt.set(&c)
			_, err := connect(t, c)
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), tt.wantKey+": "), "error %q does not start with %q", err, tt.wantKey)
			require.NotContains(t, err.Error(), string(accountSeed))
		})
	}
}

// TestNATSOptionsFilesReread checks that the files are read again at
// reconnect (so rotated ones are picked up) and that failures then still name
// their key.
func TestNATSOptionsFilesReread(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	op := newOperator(t)
	ca := newPKI(t, "ca")
	certFile, keyFile, _ := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	_, seed := userSeed(t)
	c := natsConfig("nats://127.0.0.1:1")
	c.CredsFile = writeFile(t, dir, "user.creds", op.creds(t, op.account(t, true), false))
	c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = ca.caPEM, certFile, keyFile
	n := natsConfig("nats://127.0.0.1:1")
	n.NKeySeedFile = writeFile(t, dir, "user.nk", seed)

	apply := func(c config.NATS) *nats.Options {
		o := nats.GetDefaultOptions()
		for _, opt := range NATSOptions(c) {
			require.NoError(t, opt(&o))
		}
		return &o
	}
	o, no := apply(c), apply(n)
	for _, f := range []string{c.CredsFile, c.TLS.CAFile, c.TLS.CertFile, n.NKeySeedFile} {
		require.NoError(t, os.Remove(f))
	}
	_, err := o.UserJWT()
	require.ErrorContains(t, err, "nats.creds_file: ")
	_, err = o.SignatureCB([]byte("nonce"))
	require.ErrorContains(t, err, "nats.creds_file: ")
	_, err = o.RootCAsCB()
	require.ErrorContains(t, err, "nats.tls.ca_file: ")
	_, err = o.TLSCertCB()
	require.ErrorContains(t, err, "nats.tls.cert_file")
	_, err = no.SignatureCB([]byte("nonce"))
	require.ErrorContains(t, err, "nats.nkey_seed_file: ")
}

// TestNATSOptionsNoSecretLeak checks that neither the printed config nor the
// errors of refused connections contain a password, token or seed.
func TestNATSOptionsNoSecretLeak(t *testing.T) {
	t.Parallel()
	const (
		password = "pa55-leak-canary"
		token    = "t0ken-leak-canary"
	)
	dir := t.TempDir()
	_, seed := userSeed(t)
	seedFile := writeFile(t, dir, "user.nk", seed)
	// A seed with a corrupted checksum: unusable, but still secret.
	corrupt := append([]byte(nil), seed...)
	corrupt[len(corrupt)-1] ^= 1
	corruptFile := writeFile(t, dir, "corrupt.nk", corrupt)

	users := natstest.Run(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "bridge", Password: "right-pass"}}
	})
	tokens := natstest.Run(t, func(o *server.Options) { o.Authorization = "right-token" })
	nkeyPub, _ := userSeed(t)
	nkeyServer := natstest.Run(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: nkeyPub}} })
	ca := newPKI(t, "ca")
	_, _, serverCert := ca.issue(t, "server", x509.ExtKeyUsageServerAuth, "127.0.0.1")
	tlsServer := natstest.Run(t, serverTLS(serverCert, nil), func(o *server.Options) {
		o.Users = []*server.User{{Username: "bridge", Password: "right-pass"}}
	})

	op := newOperator(t)
	credsServer := natstest.Run(t, op.serverOption)
	userPub, credsSeed := userSeed(t)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(op.account(t, false))
	require.NoError(t, err)
	untrustedCreds := writeFile(t, dir, "untrusted.creds", credsFile(userJWT, credsSeed))

	secrets := []string{password, token, string(seed), string(corrupt), string(credsSeed)}
	tests := []struct {
		name string
		url  string
		set  func(*config.NATS)
	}{
		{"wrong password", users.ClientURL(), func(c *config.NATS) { c.User, c.Password = "bridge", password }},
		{"wrong token", tokens.ClientURL(), func(c *config.NATS) { c.Token = token }},
		{"wrong nkey seed", nkeyServer.ClientURL(), func(c *config.NATS) { c.NKeySeedFile = seedFile }},
		{"corrupt nkey seed", nkeyServer.ClientURL(), func(c *config.NATS) { c.NKeySeedFile = corruptFile }},
		{"creds of an unknown account", credsServer.ClientURL(), func(c *config.NATS) { c.CredsFile = untrustedCreds }},
		{"password over untrusted tls", tlsServer.ClientURL(), func(c *config.NATS) { c.User, c.Password = "bridge", password }},
		{"password, nothing listening", "nats://127.0.0.1:1", func(c *config.NATS) { c.User, c.Password = "bridge", password }},
		{"token, nothing listening", "nats://127.0.0.1:1", func(c *config.NATS) { c.Token = token }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := natsConfig(tt.url)
			tt.set(&c)
			printed := []string{fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", c)}
			_, err := connect(t, c)
			require.Error(t, err)
			printed = append(printed, err.Error(), fmt.Sprintf("%+v", err))
			for _, p := range printed {
				for _, s := range secrets {
					require.NotContains(t, p, s)
				}
			}
		})
	}
}

// TestNATSOptionsDefaults checks the options a zero config still gets: a
// usable connect timeout and reconnecting forever.
func TestNATSOptionsDefaults(t *testing.T) {
	t.Parallel()
	s := natstest.Run(t)

	var o nats.Options
	for _, opt := range NATSOptions(config.NATS{}) {
		require.NoError(t, opt(&o))
	}
	require.Equal(t, -1, o.MaxReconnect)
	require.False(t, o.Secure)

	nc, err := connect(t, config.NATS{URL: s.ClientURL()})
	require.NoError(t, err)
	requireJetStream(t, nc)
}
