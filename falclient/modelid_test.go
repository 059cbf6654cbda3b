package falclient_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

func TestParseModelID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     falclient.ModelID
		str      string // String(); "" means in
		base     string
	}{
		{name: "two segments", in: "fal-ai/fast-sdxl", want: falclient.ModelID{Owner: "fal-ai", Alias: "fast-sdxl"}, base: "fal-ai/fast-sdxl"},
		{name: "flux dev", in: "fal-ai/flux/dev", want: falclient.ModelID{Owner: "fal-ai", Alias: "flux", Path: "dev"}, base: "fal-ai/flux"},
		{name: "flux schnell", in: "fal-ai/flux/schnell", want: falclient.ModelID{Owner: "fal-ai", Alias: "flux", Path: "schnell"}, base: "fal-ai/flux"},
		{name: "dotted path", in: "fal-ai/flux-pro/v1.1", want: falclient.ModelID{Owner: "fal-ai", Alias: "flux-pro", Path: "v1.1"}, base: "fal-ai/flux-pro"},
		{name: "deep path", in: "fal-ai/kling-video/v1.6/standard/text-to-video", want: falclient.ModelID{Owner: "fal-ai", Alias: "kling-video", Path: "v1.6/standard/text-to-video"}, base: "fal-ai/kling-video"},
		{name: "workflows", in: "workflows/alice/my-flow/step", want: falclient.ModelID{Namespace: "workflows", Owner: "alice", Alias: "my-flow", Path: "step"}, base: "workflows/alice/my-flow"},
		{name: "comfy", in: "comfy/bob/graph", want: falclient.ModelID{Namespace: "comfy", Owner: "bob", Alias: "graph"}, base: "comfy/bob/graph"},
		{name: "legacy", in: "12345-my-app", want: falclient.ModelID{Owner: "12345", Alias: "my-app"}, str: "12345/my-app", base: "12345/my-app"},
		{name: "legacy one dash", in: "1-a", want: falclient.ModelID{Owner: "1", Alias: "a"}, str: "1/a", base: "1/a"},
		{name: "florence", in: "fal-ai/florence-2-large/caption", want: falclient.ModelID{Owner: "fal-ai", Alias: "florence-2-large", Path: "caption"}, base: "fal-ai/florence-2-large"},
		{name: "stream suffix kept", in: "fal-ai/llavav15-13b/stream", want: falclient.ModelID{Owner: "fal-ai", Alias: "llavav15-13b", Path: "stream"}, base: "fal-ai/llavav15-13b"},
		{name: "underscore and tilde", in: "my_org/app~x", want: falclient.ModelID{Owner: "my_org", Alias: "app~x"}, base: "my_org/app~x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := falclient.ParseModelID(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			str := tt.str
			if str == "" {
				str = tt.in
			}
			require.Equal(t, str, got.String())
			require.Equal(t, tt.base, got.BaseAppID())
			again, err := falclient.ParseModelID(got.String())
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestParseModelIDInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "flux", "fal-ai", "abc-def", "12a-app", "123-", "-app", "123-app_x",
		"fal-ai//flux", "/fal-ai/flux", "fal-ai/flux/", "//", "/",
		"fal-ai/flux dev", " fal-ai/flux", "fal-ai/flux\n", "fal-ai/flux\t", "fal-ai/\x00flux", "fal-ai/flux\x7f",
		"fal-ai/../flux", "fal-ai/flux/..", "../x/y", "fal-ai/./flux", "a/b..c",
		"fal-ai/flux?x=1", "fal-ai/flux#frag", "fal-ai/flux%2Fdev", `fal-ai\flux`, "fal-ai/flüx",
		"workflows/alice", "comfy/x", "workflows",
		"fal-ai/" + string(make([]byte, 600)),
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			_, err := falclient.ParseModelID(in)
			require.Error(t, err)
			require.ErrorIs(t, err, falclient.ErrInvalidModelID)
			if len(in) < 100 {
				require.Contains(t, err.Error(), fmt.Sprintf("%q", in))
			}
		})
	}
}

func FuzzParseModelID(f *testing.F) {
	for _, s := range []string{
		"fal-ai/flux/dev", "fal-ai/fast-sdxl", "workflows/alice/my-flow/step", "comfy/a/b", "12345-my-app",
		"fal-ai//flux", "a/b/c/d/e", "x", "", "/a/b", "a/b/", "a/../b", "a/b?c", "workflows/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := falclient.ParseModelID(s)
		if err != nil {
			if !errors.Is(err, falclient.ErrInvalidModelID) {
				t.Fatalf("error %v does not wrap ErrInvalidModelID", err)
			}
			return
		}
		again, err := falclient.ParseModelID(m.String())
		if err != nil {
			t.Fatalf("String() %q of parsed %q does not re-parse: %v", m.String(), s, err)
		}
		if again != m {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, m)
		}
		if m.Owner == "" || m.Alias == "" {
			t.Fatalf("parsed %q with empty owner or alias: %+v", s, m)
		}
		base, err := falclient.ParseModelID(m.BaseAppID())
		if err != nil || base.Path != "" || base.BaseAppID() != m.BaseAppID() {
			t.Fatalf("base app id %q of %q: %+v, %v", m.BaseAppID(), s, base, err)
		}
	})
}
