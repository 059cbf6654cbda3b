package service

import (
	"crypto/tls"
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
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		if o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile); err == nil {
			opts = append(opts, o)
		} else {
			// Surfaces at connect time with the file named.
			opts = append(opts, func(*nats.Options) error {
				return fmt.Errorf("nats.nkey_seed_file: %w", err)
			})
		}
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	case c.Token.Reveal() != "":
		opts = append(opts, nats.Token(c.Token.Reveal()))
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
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
