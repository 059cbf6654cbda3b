package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// fieldErrors returns every FieldError in err's tree.
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// parsedFlags registers every key's flag and parses args.
func parsedFlags(tb testing.TB, args ...string) *pflag.FlagSet {
	tb.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	require.NoError(tb, fs.Parse(args))
	return fs
}

func TestLoadFile(t *testing.T) {
	t.Parallel()

	path := writeFile(t, "falbridge.yaml", `
nats:
  url: nats://127.0.0.1:4222
  tls:
    server_name: nats.internal
streams:
  replicas: 3
  storage: memory
  results_max_age: 24h
subjects:
  requests: jobs.in.*
fal:
  key: file-id:file-secret
  max_attempts: "7"
webhook:
  public_url: https://bridge.example.com
  verify: false
  max_body_bytes: 2048
limits:
  workers: 4
  max_in_flight: 8
  model_limits:
    fal-ai/flux/dev: 2
    fal-ai/flux-pro/v1.1: 3
polling:
  min_interval: 250ms
log:
  level: debug
shutdown:
  grace_period:    # null keeps the default
`)
	c, err := Load(LoadOptions{File: path, Environ: noEnv})
	require.NoError(t, err)

	want := Default()
	want.NATS.URL = "nats://127.0.0.1:4222"
	want.NATS.TLS.ServerName = "nats.internal"
	want.Streams.Replicas = 3
	want.Streams.Storage = "memory"
	want.Streams.ResultsMaxAge = 24 * time.Hour
	want.Subjects.Requests = "jobs.in.*"
	want.Fal.Key = "file-id:file-secret"
	want.Fal.MaxAttempts = 7
	want.Webhook.PublicURL = "https://bridge.example.com"
	want.Webhook.Verify = false
	want.Webhook.MaxBodyBytes = 2048
	want.Limits.Workers = 4
	want.Limits.MaxInFlight = 8
	want.Limits.ModelLimits = map[string]int{"fal-ai/flux/dev": 2, "fal-ai/flux-pro/v1.1": 3}
	want.Polling.MinInterval = 250 * time.Millisecond
	want.Log.Level = "debug"
	require.Equal(t, want, *c)
	require.Len(t, c.Warnings(), 1)
}

func TestLoadEmptyFile(t *testing.T) {
	t.Parallel()

	for _, content := range []string{"", "# only a comment\n", "nats:\n", "---\n"} {
		path := writeFile(t, "empty.yaml", content)
		c, err := Load(LoadOptions{File: path, Environ: noEnv})
		require.NoError(t, err, "%q", content)
		require.Equal(t, Default(), *c)
	}
}

func TestLoadEnv(t *testing.T) {
	t.Parallel()

	ca := writeFile(t, "ca.pem", "not really a CA")
	env := []string{
		"PATH=/usr/bin",
		"FALBRIDGE_WEBHOOK_PUBLIC_URL=https://hooks.example.com/x",
		"FALBRIDGE_NATS_TLS_CA_FILE=" + ca,
		"FALBRIDGE_LIMITS_WORKERS=8",
		"FALBRIDGE_LIMITS_MAX_IN_FLIGHT_PER_MODEL=3",
		"FALBRIDGE_LIMITS_MODEL_LIMITS=fal-ai/flux/dev=2, fal-ai/flux-pro/v1.1=5",
		"FALBRIDGE_WEBHOOK_VERIFY=false",
		"FALBRIDGE_WEBHOOK_MAX_BODY_BYTES=4096",
		"FALBRIDGE_STREAMS_RESULTS_MAX_AGE=24h",
		"FALBRIDGE_CONSUMER_AMBIGUOUS_SUBMIT_POLICY=resubmit",
		"FALBRIDGE_NATS_PASSWORD=pw",
		"FALBRIDGE_NATS_USER=u",
	}
	c, err := Load(LoadOptions{Environ: env})
	require.NoError(t, err)

	want := Default()
	want.Webhook.PublicURL = "https://hooks.example.com/x"
	want.NATS.TLS.CAFile = ca
	want.Limits.Workers = 8
	want.Limits.MaxInFlightPerModel = 3
	want.Limits.ModelLimits = map[string]int{"fal-ai/flux/dev": 2, "fal-ai/flux-pro/v1.1": 5}
	want.Webhook.Verify = false
	want.Webhook.MaxBodyBytes = 4096
	want.Streams.ResultsMaxAge = 24 * time.Hour
	want.Consumer.AmbiguousSubmitPolicy = "resubmit"
	want.NATS.Password = "pw"
	want.NATS.User = "u"
	require.Equal(t, want, *c)
}

func TestLoadFalKey(t *testing.T) {
	t.Parallel()

	file := writeFile(t, "key.yaml", "fal:\n  key: from-file:x\n")
	tests := []struct {
		name  string
		file  string
		env   []string
		flags []string
		want  string
	}{
		{name: "none", want: ""},
		{name: "FAL_KEY", env: []string{"FAL_KEY=id:secret"}, want: "id:secret"},
		{name: "id and secret", env: []string{"FAL_KEY_ID=id", "FAL_KEY_SECRET=secret"}, want: "id:secret"},
		{name: "id without secret", env: []string{"FAL_KEY_ID=id"}, want: ""},
		{name: "FAL_KEY over id and secret", env: []string{"FAL_KEY_ID=a", "FAL_KEY_SECRET=b", "FAL_KEY=k:v"}, want: "k:v"},
		{name: "empty FAL_KEY ignored", env: []string{"FAL_KEY=", "FAL_KEY_ID=a", "FAL_KEY_SECRET=b"}, want: "a:b"},
		{name: "FALBRIDGE_FAL_KEY wins", env: []string{"FAL_KEY=k:v", "FALBRIDGE_FAL_KEY=bridge:key"}, want: "bridge:key"},
		{name: "FALBRIDGE_FAL_KEY wins before", env: []string{"FALBRIDGE_FAL_KEY=bridge:key", "FAL_KEY=k:v"}, want: "bridge:key"},
		{name: "file", file: file, want: "from-file:x"},
		{name: "FAL_KEY over file", file: file, env: []string{"FAL_KEY=k:v"}, want: "k:v"},
		{name: "flag over FAL_KEY", env: []string{"FAL_KEY=k:v"}, flags: []string{"--fal.key=flag:key"}, want: "flag:key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := tt.env
			if env == nil {
				env = noEnv
			}
			c, err := Load(LoadOptions{File: tt.file, Environ: env, Flags: parsedFlags(t, tt.flags...)})
			require.NoError(t, err)
			require.Equal(t, tt.want, c.Fal.Key.Reveal())
		})
	}
}

func TestLoadPrecedence(t *testing.T) {
	t.Parallel()

	file := writeFile(t, "p.yaml", `
limits:
  workers: 4
  max_in_flight: 100
  model_limits:
    from-file: 1
log:
  level: debug
  format: json
webhook:
  listen: 127.0.0.1:7000
polling:
  min_interval: 3s
`)
	env := []string{
		"FALBRIDGE_LIMITS_WORKERS=6",
		"FALBRIDGE_LOG_FORMAT=text",
		"FALBRIDGE_POLLING_MIN_INTERVAL=4s",
		"FALBRIDGE_LIMITS_MODEL_LIMITS=from-env=2",
	}

	tests := []struct {
		name  string
		flags []string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "file and env",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 6, c.Limits.Workers)                // env over file
				require.Equal(t, 100, c.Limits.MaxInFlight)          // file over default
				require.Equal(t, "debug", c.Log.Level)               // file
				require.Equal(t, "text", c.Log.Format)               // env over file
				require.Equal(t, "127.0.0.1:7000", c.Webhook.Listen) // unset flag keeps file
				require.Equal(t, 4*time.Second, c.Polling.MinInterval)
				require.Equal(t, map[string]int{"from-env": 2}, c.Limits.ModelLimits) // env replaces the map
			},
		},
		{
			name:  "flags over env over file",
			flags: []string{"--limits.workers=8", "--log.level", "warn", "--polling.min_interval=2s", "--limits.model_limits=from-flag=3,fal-ai/flux-pro/v1.1=4", "--webhook.verify=false"},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 8, c.Limits.Workers)
				require.Equal(t, 100, c.Limits.MaxInFlight)
				require.Equal(t, "warn", c.Log.Level)
				require.Equal(t, "text", c.Log.Format)
				require.Equal(t, "127.0.0.1:7000", c.Webhook.Listen)
				require.Equal(t, 2*time.Second, c.Polling.MinInterval)
				require.Equal(t, map[string]int{"from-flag": 3, "fal-ai/flux-pro/v1.1": 4}, c.Limits.ModelLimits)
				require.False(t, c.Webhook.Verify)
			},
		},
		{
			name:  "flag set to its default still wins",
			flags: []string{"--limits.workers=64"},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 64, c.Limits.Workers)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(LoadOptions{File: file, Environ: env, Flags: parsedFlags(t, tt.flags...)})
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestLoadForeignFlags(t *testing.T) {
	t.Parallel()

	// The binary's own flags share the set; they are not keys and are ignored.
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.String("config", "", "config file")
	fs.Bool("verbose", false, "")
	// A key flag registered by hand as a string is converted like env values.
	fs.String("limits.workers", "", "")
	fs.String("polling.max_interval", "", "")
	require.NoError(t, fs.Parse([]string{"--config=x.yaml", "--verbose", "--limits.workers=5", "--polling.max_interval=1m"}))
	c, err := Load(LoadOptions{Flags: fs, Environ: noEnv})
	require.NoError(t, err)
	require.Equal(t, 5, c.Limits.Workers)
	require.Equal(t, time.Minute, c.Polling.MaxInterval)

	require.NoError(t, fs.Set("limits.workers", "many"))
	_, err = Load(LoadOptions{Flags: fs, Environ: noEnv})
	require.ErrorIs(t, err, ErrInvalidValue)
	require.ErrorContains(t, err, `limits.workers: expected an integer, got "many" (flag --limits.workers)`)
}

func TestLoadConfigEnv(t *testing.T) {
	t.Parallel()

	viaEnv := writeFile(t, "env.yaml", "limits:\n  workers: 3\n")
	viaOpt := writeFile(t, "opt.yaml", "limits:\n  workers: 5\n")

	c, err := Load(LoadOptions{Environ: []string{"FALBRIDGE_CONFIG=" + viaEnv}})
	require.NoError(t, err)
	require.Equal(t, 3, c.Limits.Workers)

	c, err = Load(LoadOptions{File: viaOpt, Environ: []string{"FALBRIDGE_CONFIG=" + viaEnv}})
	require.NoError(t, err)
	require.Equal(t, 5, c.Limits.Workers)

	c, err = Load(LoadOptions{Environ: []string{"FALBRIDGE_CONFIG="}})
	require.NoError(t, err)
	require.Equal(t, Default(), *c)
}

func TestLoadBase(t *testing.T) {
	t.Parallel()

	base := Dev()
	base.Limits.ModelLimits = map[string]int{"fal-ai/flux/dev": 1}
	base.Fal.Key = "base-id:base-secret"
	c, err := Load(LoadOptions{Base: &base, Environ: []string{"FALBRIDGE_LOG_LEVEL=debug"}})
	require.NoError(t, err)
	require.Equal(t, "base-id:base-secret", c.Fal.Key.Reveal())
	require.Equal(t, "127.0.0.1:8080", c.Webhook.Listen)
	require.Equal(t, "debug", c.Log.Level)
	require.Equal(t, map[string]int{"fal-ai/flux/dev": 1}, c.Limits.ModelLimits)
	c.Limits.ModelLimits["fal-ai/flux/dev"] = 9
	require.Equal(t, 1, base.Limits.ModelLimits["fal-ai/flux/dev"], "Load does not alias Base's map")

	file := writeFile(t, "clear.yaml", "limits:\n  model_limits: {}\n")
	c, err = Load(LoadOptions{Base: &base, File: file, Environ: noEnv})
	require.NoError(t, err)
	require.Nil(t, c.Limits.ModelLimits, "an empty mapping clears the map")
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		file    string // YAML content; "" = no file
		env     []string
		is      error
		keys    []string // keys of the FieldErrors, in order
		message []string // substrings of the error text
	}{
		{
			name: "unknown file keys",
			file: "limits:\n  worker: 3\nbogus: 1\nnats:\n  tls:\n    ca: x\n",
			is:   ErrUnknownKey,
			keys: []string{"bogus", "limits.worker", "nats.tls.ca"},
			message: []string{
				"config: 3 problems:",
				"limits.worker: unknown key (did you mean limits.workers?) (file ",
				"bogus: unknown key",
				"nats.tls.ca: unknown key",
				"test.yaml",
			},
		},
		{
			name:    "dotted key in file",
			file:    "limits.workers: 3\n",
			is:      ErrUnknownKey,
			keys:    []string{"limits.workers"},
			message: []string{"nest keys as mappings"},
		},
		{
			name:    "wrong integer in file",
			file:    "limits:\n  workers: abc\n",
			is:      ErrInvalidValue,
			keys:    []string{"limits.workers"},
			message: []string{`config: limits.workers: expected an integer, got "abc" (file `},
		},
		{
			name:    "fractional integer",
			file:    "limits:\n  workers: 2.5\n",
			is:      ErrInvalidValue,
			keys:    []string{"limits.workers"},
			message: []string{"limits.workers: expected an integer, got 2.5"},
		},
		{
			name:    "bare number duration",
			file:    "polling:\n  min_interval: 5\n",
			is:      ErrInvalidValue,
			keys:    []string{"polling.min_interval"},
			message: []string{`polling.min_interval: expected a duration such as "30s"`},
		},
		{
			name:    "bad duration string",
			file:    "consumer:\n  ack_wait: soon\n",
			is:      ErrInvalidValue,
			keys:    []string{"consumer.ack_wait"},
			message: []string{`consumer.ack_wait: expected a duration such as "30s", "5m" or "1h30m", got "soon"`},
		},
		{
			name:    "bad bool",
			file:    "webhook:\n  verify: maybe\n",
			is:      ErrInvalidValue,
			keys:    []string{"webhook.verify"},
			message: []string{`webhook.verify: expected true or false, got "maybe"`},
		},
		{
			name:    "section not a mapping",
			file:    "nats: nats://x:4222\n",
			is:      ErrInvalidValue,
			keys:    []string{"nats"},
			message: []string{`nats: expected a mapping of keys, got "nats://x:4222"`},
		},
		{
			name:    "string key given a mapping",
			file:    "nats:\n  url:\n    host: x\n",
			is:      ErrInvalidValue,
			keys:    []string{"nats.url"},
			message: []string{"nats.url: expected a string, got a mapping"},
		},
		{
			name:    "model_limits not integers",
			file:    "limits:\n  model_limits:\n    fal-ai/flux/dev: lots\n",
			is:      ErrInvalidValue,
			keys:    []string{"limits.model_limits"},
			message: []string{`limits.model_limits: model "fal-ai/flux/dev": expected an integer, got "lots"`},
		},
		{
			name:    "model_limits a list",
			file:    "limits:\n  model_limits: [a, b]\n",
			is:      ErrInvalidValue,
			keys:    []string{"limits.model_limits"},
			message: []string{"limits.model_limits: expected a mapping of model id to integer"},
		},
		{
			name:    "unknown env var",
			env:     []string{"FALBRIDGE_LIMITS_WORKER=3"},
			is:      ErrUnknownKey,
			keys:    []string{"FALBRIDGE_LIMITS_WORKER"},
			message: []string{"FALBRIDGE_LIMITS_WORKER: unknown environment variable", "did you mean FALBRIDGE_LIMITS_WORKERS?"},
		},
		{
			name:    "unknown env var far from any key",
			env:     []string{"FALBRIDGE_SOMETHING_ELSE_ENTIRELY=1"},
			is:      ErrUnknownKey,
			keys:    []string{"FALBRIDGE_SOMETHING_ELSE_ENTIRELY"},
			message: []string{"FALBRIDGE_SOMETHING_ELSE_ENTIRELY: unknown environment variable"},
		},
		{
			name:    "bad env integer",
			env:     []string{"FALBRIDGE_LIMITS_WORKERS=abc"},
			is:      ErrInvalidValue,
			keys:    []string{"limits.workers"},
			message: []string{`config: limits.workers: expected an integer, got "abc" (env FALBRIDGE_LIMITS_WORKERS)`},
		},
		{
			name:    "integer overflow",
			env:     []string{"FALBRIDGE_STREAMS_REPLICAS=99999999999999999999"},
			is:      ErrInvalidValue,
			keys:    []string{"streams.replicas"},
			message: []string{"streams.replicas: expected an integer"},
		},
		{
			name:    "bad env model_limits",
			env:     []string{"FALBRIDGE_LIMITS_MODEL_LIMITS=fal-ai/flux/dev:3"},
			is:      ErrInvalidValue,
			keys:    []string{"limits.model_limits"},
			message: []string{`limits.model_limits: expected model=n[,model=n…], got entry "fal-ai/flux/dev:3"`},
		},
		{
			name:    "empty env integer",
			env:     []string{"FALBRIDGE_LIMITS_WORKERS="},
			is:      ErrInvalidValue,
			keys:    []string{"limits.workers"},
			message: []string{`limits.workers: expected an integer, got ""`},
		},
		{
			name: "file, env and validation problems together stop before validation",
			file: "limits:\n  workerz: 1\n",
			env:  []string{"FALBRIDGE_LOG_LEVEL=verbose", "FALBRIDGE_NOPE=1"},
			is:   ErrUnknownKey,
			keys: []string{"limits.workerz", "FALBRIDGE_NOPE"},
		},
		{
			name:    "validation",
			env:     []string{"FALBRIDGE_LIMITS_WORKERS=0"},
			is:      ErrInvalidValue,
			keys:    []string{"limits.workers"},
			message: []string{"config: limits.workers: must be ≥ 1 (got 0)"},
		},
		{
			name: "several validation problems",
			env:  []string{"FALBRIDGE_LIMITS_WORKERS=300", "FALBRIDGE_LOG_FORMAT=xml"},
			is:   ErrInvalidValue,
			keys: []string{"limits.max_in_flight", "log.format"},
			message: []string{
				"config: 2 problems:\n  limits.max_in_flight: must be ≥ limits.workers (256 < 300)\n  log.format: must be one of json, text (got \"xml\")",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var path string
			if tt.file != "" {
				path = writeFile(t, "test.yaml", tt.file)
			}
			env := tt.env
			if env == nil {
				env = noEnv
			}
			c, err := Load(LoadOptions{File: path, Environ: env})
			require.Error(t, err)
			require.Nil(t, c)
			require.ErrorIs(t, err, tt.is)
			require.True(t, strings.HasPrefix(err.Error(), "config: "), err.Error())
			var keys []string
			for _, fe := range fieldErrors(err) {
				keys = append(keys, fe.Key)
			}
			require.Equal(t, tt.keys, keys, err.Error())
			for _, m := range tt.message {
				require.Contains(t, err.Error(), m)
			}
			var fe *FieldError
			require.True(t, errors.As(err, &fe))
		})
	}
}

func TestLoadSecretTypeErrorDoesNotLeak(t *testing.T) {
	t.Parallel()

	path := writeFile(t, "s.yaml", "fal:\n  key: 918273645\nnats:\n  token: [918273645]\n")
	_, err := Load(LoadOptions{File: path, Environ: noEnv})
	require.ErrorIs(t, err, ErrInvalidValue)
	require.NotContains(t, err.Error(), "918273645")
	require.Contains(t, err.Error(), "fal.key: expected a string, got a number (quote it)")
	require.Contains(t, err.Error(), "nats.token: expected a string, got a list")
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()

	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(LoadOptions{File: missing, Environ: noEnv})
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "config: read file:")
	require.ErrorContains(t, err, missing)

	tests := []struct{ name, content string }{
		{"not yaml", "limits: [unclosed\n"},
		{"a list", "- a\n- b\n"},
		{"duplicate key", "log:\n  level: info\n  level: debug\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "bad.yaml", tt.content)
			_, err := Load(LoadOptions{File: path, Environ: noEnv})
			require.ErrorContains(t, err, "config: file "+path)
		})
	}
}

// Kubernetes injects FALBRIDGE_SERVICE_* and FALBRIDGE_PORT* into pods of a
// namespace with a Service named "falbridge"; they must not stop the start,
// while a real typo still does.
func TestLoadIgnoresKubernetesServiceLinks(t *testing.T) {
	t.Parallel()
	for _, k := range Keys() {
		up := strings.ToUpper(k)
		require.False(t, strings.HasPrefix(up, "SERVICE") || strings.HasPrefix(up, "PORT"),
			"key %s would collide with Kubernetes service-link variables", k)
	}
	cfg, err := Load(LoadOptions{Environ: []string{
		"FALBRIDGE_SERVICE_HOST=10.0.0.7",
		"FALBRIDGE_SERVICE_PORT=8080",
		"FALBRIDGE_SERVICE_PORT_WEBHOOK=8080",
		"FALBRIDGE_PORT=tcp://10.0.0.7:8080",
		"FALBRIDGE_PORT_8080_TCP=tcp://10.0.0.7:8080",
		"FALBRIDGE_PORT_8080_TCP_ADDR=10.0.0.7",
		"FALBRIDGE_PORT_8080_TCP_PORT=8080",
		"FALBRIDGE_PORT_8080_TCP_PROTO=tcp",
		"FALBRIDGE_LIMITS_WORKERS=3",
	}})
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Limits.Workers)

	_, err = Load(LoadOptions{Environ: []string{"FALBRIDGE_LIMITS_WORKRES=3"}})
	require.ErrorIs(t, err, ErrUnknownKey)
}

// subjects.result_subject_allow is a list: YAML sequences, comma-separated
// environment and flags; each source replaces the whole list, and an empty
// one allows nothing.
func TestLoadResultSubjectAllow(t *testing.T) {
	t.Parallel()
	listFile := writeFile(t, "list.yaml", "subjects:\n  result_subject_allow: [app.>, \"events.*.done\"]\n")
	emptyFile := writeFile(t, "empty.yaml", "subjects:\n  result_subject_allow: []\n")
	badFile := writeFile(t, "bad.yaml", "subjects:\n  result_subject_allow: [1, 2]\n")
	reservedFile := writeFile(t, "reserved.yaml", "subjects:\n  result_subject_allow: [fal.results.>]\n")
	tests := []struct {
		name    string
		file    string
		env     []string
		flags   []string
		want    []string
		wantErr string
	}{
		{name: "default", want: []string{"app.>"}},
		{name: "file", file: listFile, want: []string{"app.>", "events.*.done"}},
		{name: "file empty allows none", file: emptyFile, want: []string{}},
		{name: "env", env: []string{"FALBRIDGE_SUBJECTS_RESULT_SUBJECT_ALLOW=svc.> , orders.done"}, want: []string{"svc.>", "orders.done"}},
		{name: "env empty allows none", file: listFile, env: []string{"FALBRIDGE_SUBJECTS_RESULT_SUBJECT_ALLOW="}, want: []string{}},
		{name: "flag over env", env: []string{"FALBRIDGE_SUBJECTS_RESULT_SUBJECT_ALLOW=svc.>"}, flags: []string{"--subjects.result_subject_allow=a.>,b.>"}, want: []string{"a.>", "b.>"}},
		{name: "file not strings", file: badFile, wantErr: "subjects.result_subject_allow: entry 0: expected a string"},
		{name: "file reserved", file: reservedFile, wantErr: `subjects.result_subject_allow: "fal.results.>" lies within subjects.results`},
		{name: "env invalid", env: []string{"FALBRIDGE_SUBJECTS_RESULT_SUBJECT_ALLOW=a b"}, wantErr: `subjects.result_subject_allow: "a b" is not a valid subject pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := tt.env
			if env == nil {
				env = noEnv
			}
			c, err := Load(LoadOptions{File: tt.file, Environ: env, Flags: parsedFlags(t, tt.flags...)})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.ElementsMatch(t, tt.want, c.Subjects.ResultSubjectAllow)
			// What config print shows loads back to the same list.
			y, err := c.YAML()
			require.NoError(t, err)
			path := writeFile(t, "printed.yaml", string(y))
			back, err := Load(LoadOptions{File: path, Environ: noEnv})
			require.NoError(t, err)
			require.ElementsMatch(t, tt.want, back.Subjects.ResultSubjectAllow)
		})
	}
}
