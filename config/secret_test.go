package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	testKey      = "9f2c1a7e-key-id:5b8d0c3f-very-secret"
	testPassword = "hunter2-nats-password"
	testToken    = "s3cr3t-nats-token"
)

// secretConfig is Default with all three secrets set.
func secretConfig() Config {
	c := Default()
	c.Fal.Key = testKey
	c.NATS.Password = testPassword
	c.NATS.User = "bridge"
	c.NATS.Token = testToken
	return c
}

func requireNoSecret(tb testing.TB, out string) {
	tb.Helper()
	for _, s := range []string{testKey, testPassword, testToken, "very-secret", "hunter2", "s3cr3t"} {
		require.NotContains(tb, out, s)
	}
}

func TestSecretForms(t *testing.T) {
	t.Parallel()

	s := Secret(testKey)
	yamlOut, err := yaml.Marshal(s)
	require.NoError(t, err)
	jsonOut, err := json.Marshal(s)
	require.NoError(t, err)
	textOut, err := s.MarshalText()
	require.NoError(t, err)

	tests := []struct {
		name string
		got  string
		want string
	}{
		{"String", s.String(), "****"},
		{"GoString", s.GoString(), `"****"`},
		{"Sprint", fmt.Sprint(s), "****"},
		{"%v", fmt.Sprintf("%v", s), "****"},
		{"%+v", fmt.Sprintf("%+v", s), "****"},
		{"%#v", fmt.Sprintf("%#v", s), `"****"`},
		{"%s", fmt.Sprintf("%s", s), "****"},
		{"%q", fmt.Sprintf("%q", s), `"****"`},
		{"%x", fmt.Sprintf("%x", s), "****"},
		{"%10s", fmt.Sprintf("%10s", s), "****"},
		{"pointer %v", fmt.Sprintf("%v", &s), "****"},
		{"MarshalText", string(textOut), "****"},
		{"MarshalJSON", string(jsonOut), `"****"`},
		{"MarshalYAML", string(yamlOut), "'****'\n"},
		{"LogValue", s.LogValue().String(), "****"},
		{"Reveal", s.Reveal(), testKey},
		{"empty String", Secret("").String(), ""},
		{"empty %v", fmt.Sprintf("%v", Secret("")), ""},
		{"empty %#v", fmt.Sprintf("%#v", Secret("")), `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.got)
		})
	}
	require.True(t, s.IsSet())
	require.False(t, Secret("").IsSet())
}

func TestSecretUnmarshalsPlainStrings(t *testing.T) {
	t.Parallel()

	var v struct {
		Key Secret `json:"key" yaml:"key"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"key":"a:b"}`), &v))
	require.Equal(t, "a:b", v.Key.Reveal())
	require.NoError(t, yaml.Unmarshal([]byte("key: c:d\n"), &v))
	require.Equal(t, "c:d", v.Key.Reveal())
	var s Secret
	require.NoError(t, s.UnmarshalText([]byte("e:f")))
	require.Equal(t, "e:f", s.Reveal())
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	t.Parallel()

	c := secretConfig()
	jsonOut, err := json.Marshal(c)
	require.NoError(t, err)
	yamlOut, err := c.YAML()
	require.NoError(t, err)
	yamlLib, err := yaml.Marshal(c)
	require.NoError(t, err)
	redYAML, err := c.Redacted().YAML()
	require.NoError(t, err)

	tests := []struct {
		name string
		out  string
	}{
		{"%v", fmt.Sprintf("%v", c)},
		{"%+v", fmt.Sprintf("%+v", c)},
		{"%#v", fmt.Sprintf("%#v", c)},
		{"pointer %+v", fmt.Sprintf("%+v", &c)},
		{"json", string(jsonOut)},
		{"YAML", string(yamlOut)},
		{"yaml.Marshal", string(yamlLib)},
		{"Redacted YAML", string(redYAML)},
		{"Redacted %#v", fmt.Sprintf("%#v", c.Redacted())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requireNoSecret(t, tt.out)
			require.Contains(t, tt.out, "****")
		})
	}
}

func TestSlogNeverShowsSecrets(t *testing.T) {
	t.Parallel()

	c := secretConfig()
	tests := []struct {
		name    string
		handler func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(tt.handler(&buf))
			log.Info("loaded",
				"config", c,
				"config_ptr", &c,
				"fal", c.Fal,
				"key", c.Fal.Key,
				slog.Any("token", c.NATS.Token),
				slog.String("password", c.NATS.Password.String()),
			)
			out := buf.String()
			requireNoSecret(t, out)
			require.Contains(t, out, "****")
		})
	}
}

// #11: secrets given as flags are visible in ps; the commands warn about
// exactly those flags.
func TestSecretFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"none", nil, nil},
		{"not secret", []string{"--limits.workers=3", "--nats.url=nats://127.0.0.1:4222"}, nil},
		{"fal key", []string{"--fal.key=id:secret"}, []string{"--fal.key"}},
		{"nats password and token", []string{"--nats.token=t", "--nats.password=p"}, []string{"--nats.password", "--nats.token"}},
		{"url with user info", []string{"--nats.url=nats://u:p@127.0.0.1:4222"}, []string{"--nats.url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			RegisterFlags(fs)
			require.NoError(t, fs.Parse(tt.args))
			got := SecretFlags(fs)
			require.ElementsMatch(t, tt.want, got)
		})
	}
}
