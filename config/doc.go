// Package config loads falbridge's one typed [Config] with koanf: defaults,
// then a YAML file, then FALBRIDGE_* environment variables (and FAL_KEY), then
// command-line flags. Unknown keys and invalid values are errors that name the
// key.
//
// # Keys
//
// Every setting has a dotted, snake_case key taken from the koanf struct tags
// ("limits.workers", "webhook.public_url"); [Keys] lists them. The same key
// names the YAML path, the environment variable (FALBRIDGE_ + the key
// upper-cased with dots as underscores: FALBRIDGE_WEBHOOK_PUBLIC_URL) and the
// flag (--webhook.public_url, see [RegisterFlags]). example.yaml in this
// directory (also [SampleYAML]) lists every key with its default and is kept
// equal to [Default] by a test.
//
// # Loading
//
// [Load] layers the sources and then calls [Config.Validate]; every problem is
// reported at once, each starting with its key. [Config.Warnings] lists risky
// but valid settings (webhook verification off, …) for the caller to log.
//
// # Secrets
//
// fal.key, nats.password and nats.token are [Secret]s: every printed form
// (fmt, JSON, YAML, slog) is "****". Use [Secret.Reveal] where the value is
// needed. [Config.Redacted] and [Config.YAML] are safe to print.
package config
