// Package version holds the build version, stamped at link time with
// -ldflags "-X github.com/falbridge/falbridge/internal/version.Version=...".
package version

// Version is the falbridge release; "dev" for unstamped builds.
var Version = "dev"
