package falclient_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

const (
	testKeyID     = "3f2c9a1e-7b44-4c1d-9e0a-5d6b8c7f1a23"
	testKeySecret = "9b7e5c3a1f0d2e4b6a8c0e1f3d5b7a9c"
	testKey       = falclient.Key(testKeyID + ":" + testKeySecret)
)

func TestKeyRedaction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  falclient.Key
		want string
	}{
		{"uuid id", testKey, "3f2c…:****"},
		{"short id", "abc:def", "****"},
		{"no colon", "justasecretvalue", "****"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := tt.key
			require.Equal(t, tt.want, k.String())
			require.Equal(t, tt.want, k.Redacted())
			for _, verb := range []string{"%v", "%s", "%+v", "%x", "%X", "%d", "%10s", "%-8v"} {
				require.Contains(t, fmt.Sprintf(verb, k), tt.want, verb)
			}
			require.Equal(t, fmt.Sprintf("%q", tt.want), fmt.Sprintf("%q", k))
			require.Equal(t, fmt.Sprintf("falclient.Key(%q)", tt.want), fmt.Sprintf("%#v", k))
			require.Equal(t, fmt.Sprintf("falclient.Key(%q)", tt.want), k.GoString())

			type wrapper struct {
				Key  falclient.Key  `json:"key"`
				Ptr  *falclient.Key `json:"ptr"`
				Name string         `json:"name"`
			}
			w := wrapper{Key: k, Ptr: &k, Name: "x"}
			js, err := json.Marshal(w)
			require.NoError(t, err)
			want, _ := json.Marshal(tt.want)
			require.JSONEq(t, fmt.Sprintf(`{"key":%s,"ptr":%s,"name":"x"}`, want, want), string(js))
			txt, err := k.MarshalText()
			require.NoError(t, err)
			require.Equal(t, tt.want, string(txt))

			for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v", w), fmt.Sprintf("%+v", w), fmt.Sprintf("%#v", w), fmt.Sprintln(k, &k)} {
				if tt.key != "" && tt.want != string(tt.key) {
					require.NotContains(t, s, string(tt.key))
				}
				require.NotContains(t, s, testKeySecret)
			}

			var buf bytes.Buffer
			for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
				slog.New(h).Info("key", "key", k, "ptr", &k, "group", slog.GroupValue(slog.Any("k", k)), "w", w)
			}
			require.NotContains(t, buf.String(), testKeySecret)
			if tt.key != "" {
				require.NotContains(t, buf.String(), string(tt.key)+"\"")
			}
		})
	}
}

func TestKeyFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want falclient.Key
	}{
		{"FAL_KEY", map[string]string{"FAL_KEY": "id:secret", "FAL_KEY_ID": "x", "FAL_KEY_SECRET": "y"}, "id:secret"},
		{"trimmed", map[string]string{"FAL_KEY": " id:secret\n"}, "id:secret"},
		{"id and secret", map[string]string{"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}, "id:secret"},
		{"only id", map[string]string{"FAL_KEY_ID": "id"}, ""},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := falclient.KeyFromLookup(func(k string) string { return tt.env[k] })
			require.Equal(t, tt.want, got)
		})
	}
}
