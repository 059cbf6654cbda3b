package service

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/falbridge/falbridge/config"
)

// StartEmbedded starts a JetStream-enabled NATS server listening on listen
// ("host:port"; port 0 picks one) with its store in storeDir.
func StartEmbedded(listen, storeDir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats.embedded.listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats.embedded.listen %q: bad port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// The server reports a taken port only in its (silenced) log and
		// then never becomes ready; try the address first, so the error
		// comes at once and says what is wrong.
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("nats.embedded.listen %s: %w (is another NATS server or falbridge dev running? choose another address, or :0 for any free port)", listen, err)
		}
		_ = ln.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "falbridge-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s within 10s", listen)
	}
	return ns, nil
}

// NATSOptions turns the nats.* config into connection options: auth, TLS,
// timeouts, and reconnecting forever (a bridge outlives NATS restarts).
//
// Files are read when the options are applied (at nats.Connect) and again at
// every reconnect, so rotated credentials and certificates are picked up. An
// unusable file fails nats.Connect with an error that starts with its config
// key ("nats.creds_file: ..."); no error contains a password, token or seed.
func NATSOptions(c config.NATS) []nats.Option {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.Timeout(c.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(false),
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, credsOption(c.CredsFile))
	case c.NKeySeedFile != "":
		opts = append(opts, nkeyOption(c.NKeySeedFile))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	case c.Token.IsSet():
		opts = append(opts, nats.Token(c.Token.Reveal()))
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, caOption(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, clientCertOption(c.TLS.CertFile, c.TLS.KeyFile))
	}
	if c.TLS.ServerName != "" {
		opts = append(opts, func(o *nats.Options) error {
			if o.TLSConfig == nil {
				o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			o.TLSConfig.ServerName = c.TLS.ServerName
			o.Secure = true
			return nil
		})
	}
	return opts
}

// credsOption authenticates with the user JWT and seed of a creds file. Unlike
// nats.UserCredentials alone, it also checks the seed when applied, so that a
// file without one fails nats.Connect instead of the first server handshake.
func credsOption(file string) nats.Option {
	const key = "nats.creds_file"
	return func(o *nats.Options) error {
		if err := nats.UserCredentials(file)(o); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		jwtCB := o.UserJWT
		o.UserJWT = func() (string, error) {
			jwt, err := jwtCB()
			if err != nil {
				return "", fmt.Errorf("%s: %w", key, err)
			}
			return jwt, nil
		}
		o.SignatureCB = keyedSig(key, o.SignatureCB)
		if _, err := o.SignatureCB([]byte("falbridge")); err != nil {
			return err
		}
		return nil
	}
}

// nkeyOption authenticates with the user nkey seed in file.
func nkeyOption(file string) nats.Option {
	const key = "nats.nkey_seed_file"
	return func(o *nats.Options) error {
		opt, err := nats.NkeyOptionFromSeed(file)
		if err == nil {
			err = opt(o)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		o.SignatureCB = keyedSig(key, o.SignatureCB)
		return nil
	}
}

// caOption trusts the CAs in file instead of the system pool.
func caOption(file string) nats.Option {
	const key = "nats.tls.ca_file"
	return func(o *nats.Options) error {
		if err := nats.RootCAs(file)(o); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		cb := o.RootCAsCB
		o.RootCAsCB = func() (*x509.CertPool, error) {
			pool, err := cb()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			return pool, nil
		}
		return nil
	}
}

// clientCertOption presents the client certificate in certFile with the key
// in keyFile.
func clientCertOption(certFile, keyFile string) nats.Option {
	const key = "nats.tls.cert_file, nats.tls.key_file"
	return func(o *nats.Options) error {
		if err := nats.ClientCert(certFile, keyFile)(o); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		cb := o.TLSCertCB
		o.TLSCertCB = func() (tls.Certificate, error) {
			cert, err := cb()
			if err != nil {
				return tls.Certificate{}, fmt.Errorf("%s: %w", key, err)
			}
			return cert, nil
		}
		return nil
	}
}

// keyedSig makes the errors of sig, which rereads a seed file at every
// (re)connect, start with the config key of that file.
func keyedSig(key string, sig nats.SignatureHandler) nats.SignatureHandler {
	return func(nonce []byte) ([]byte, error) {
		b, err := sig(nonce)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return b, nil
	}
}
