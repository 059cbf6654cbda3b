package publisher_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

func TestDecodeTrigger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string // canonical JSON of the decoded trigger
	}{
		{
			name: "canonical minimal",
			body: `{"model_id":"fal-ai/flux/dev","input":{"prompt":"a cat"}}`,
			want: `{"model_id":"fal-ai/flux/dev","input":{"prompt":"a cat"}}`,
		},
		{
			name: "canonical full",
			body: `{"id":"job-1","model_id":"fal-ai/flux/dev","input":{ "prompt" : "a cat" },"mode":"sync",
				"result_subject":"app.done.job-1","metadata":{"user": [1, 2]},"priority":"low","timeout":"90s"}`,
			want: `{"id":"job-1","model_id":"fal-ai/flux/dev","input":{"prompt":"a cat"},"mode":"sync",` +
				`"result_subject":"app.done.job-1","metadata":{"user":[1,2]},"priority":"low","timeout":"1m30s"}`,
		},
		{
			name: "progress asked",
			body: `{"model_id":"m","input":{},"progress":true}`,
			want: `{"model_id":"m","input":{},"progress":true}`,
		},
		{
			name: "tenant",
			body: `{"model_id":"m","input":{},"tenant":"team-a"}`,
			want: `{"model_id":"m","input":{},"tenant":"team-a"}`,
		},
		{
			name: "tenant is not input in the flat form",
			body: `{"model_id":"m","prompt":"p","tenant":"b"}`,
			want: `{"model_id":"m","input":{"prompt":"p"},"tenant":"b"}`,
		},
		{
			name: "fal request options",
			body: `{"model_id":"m","input":{},"start_timeout":"2.5s","media_expires_in":3600}`,
			want: `{"model_id":"m","input":{},"start_timeout":"2.5s","media_expires_in":"1h0m0s"}`,
		},
		{
			name: "fal request options are not input in the flat form",
			body: `{"model_id":"m","prompt":"p","start_timeout":30,"media_expires_in":"24h"}`,
			want: `{"model_id":"m","input":{"prompt":"p"},"start_timeout":"30s","media_expires_in":"24h0m0s"}`,
		},
		{
			name: "progress false is omitted",
			body: `{"model_id":"m","input":{},"progress":false}`,
			want: `{"model_id":"m","input":{}}`,
		},
		{
			name: "progress is not input in the flat form",
			body: `{"model_id":"m","prompt":"p","progress":true}`,
			want: `{"model_id":"m","input":{"prompt":"p"},"progress":true}`,
		},
		{
			name: "timeout in seconds",
			body: `{"model_id":"m","input":{},"timeout":1.5}`,
			want: `{"model_id":"m","input":{},"timeout":"1.5s"}`,
		},
		{
			name: "canonical big seed untouched",
			body: `{"model_id":"m","input":{"seed":18446744073709551615,"x":1.50}}`,
			want: `{"model_id":"m","input":{"seed":18446744073709551615,"x":1.50}}`,
		},
		{
			name: "nulls mean absent",
			body: `{"model_id":"m","input":{},"id":null,"mode":null,"metadata":null,"timeout":null,"priority":null}`,
			want: `{"model_id":"m","input":{}}`,
		},
		{
			name: "empty strings for optional keys",
			body: `{"model_id":"m","input":{},"mode":"","priority":"","result_subject":""}`,
			want: `{"model_id":"m","input":{}}`,
		},
		{
			name: "flat form",
			body: `{"model_id":"fal-ai/flux/dev","prompt":"a cat","image_size":"square_hd","num_images":2,` +
				`"seed":98765432109876543210,"id":"wf-7","mode":"queue"}`,
			want: `{"id":"wf-7","model_id":"fal-ai/flux/dev","input":{"image_size":"square_hd","num_images":2,` +
				`"prompt":"a cat","seed":98765432109876543210},"mode":"queue"}`,
		},
		{
			name: "flat form nested values compacted",
			body: `{"model_id":"m","image_size":{ "width" : 512, "height": 512 },"loras":[ {"path":"x"} ]}`,
			want: `{"model_id":"m","input":{"image_size":{"width":512,"height":512},"loras":[{"path":"x"}]}}`,
		},
		{
			name: "flat form without inputs",
			body: `{"model_id":"m"}`,
			want: `{"model_id":"m","input":{}}`,
		},
		{
			name: "tool form",
			body: `{"model":"fal-ai/llavav15-13b","input_params":{"prompt":"describe","seed":12345678901234567890},` +
				`"image_input":"https://example.com/a.png","use_streaming":true}`,
			want: `{"model_id":"fal-ai/llavav15-13b","input":{"image_url":"https://example.com/a.png",` +
				`"prompt":"describe","seed":12345678901234567890},"mode":"stream"}`,
		},
		{
			name: "tool form image list",
			body: `{"model":"m","input_params":{},"image_input":["https://a/1.png","https://a/2.png"]}`,
			want: `{"model_id":"m","input":{"image_urls":["https://a/1.png","https://a/2.png"]}}`,
		},
		{
			name: "tool form without input_params uses flat keys",
			body: `{"model":"m","prompt":"p","use_streaming":false}`,
			want: `{"model_id":"m","input":{"prompt":"p"}}`,
		},
		{
			name: "use_streaming agrees with mode",
			body: `{"model":"m","input_params":{},"use_streaming":true,"mode":"stream"}`,
			want: `{"model_id":"m","input":{},"mode":"stream"}`,
		},
		{
			name: "use_streaming false with sync",
			body: `{"model":"m","input_params":{},"use_streaming":false,"mode":"sync"}`,
			want: `{"model_id":"m","input":{},"mode":"sync"}`,
		},
		{
			name: "image_input in canonical form",
			body: `{"model_id":"m","input":{"prompt":"p"},"image_input":"data:image/png;base64,AAAA"}`,
			want: `{"model_id":"m","input":{"image_url":"data:image/png;base64,AAAA","prompt":"p"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := publisher.DecodeTrigger([]byte(tt.body))
			require.NoError(t, err)
			require.True(t, json.Valid(got.Input))
			b, err := json.Marshal(got)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(b))
		})
	}
}

func TestDecodeTriggerBigSeedExact(t *testing.T) {
	t.Parallel()
	got, err := publisher.DecodeTrigger([]byte(`{"model_id":"m","seed":340282366920938463463374607431768211457}`))
	require.NoError(t, err)
	var in map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(got.Input, &in))
	require.Equal(t, "340282366920938463463374607431768211457", string(in["seed"]))
}

func TestDecodeTriggerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		field string
	}{
		{"empty body", ``, ""},
		{"array body", `[{"model_id":"m"}]`, ""},
		{"string body", `"x"`, ""},
		{"broken JSON", `{"model_id":"m"`, ""},
		{"trailing data", `{"model_id":"m"} {}`, ""},
		{"invalid UTF-8", "{\"model_id\":\"m\xff\"}", ""},
		{"model_id missing", `{"input":{}}`, "model_id"},
		{"model_id empty", `{"model_id":"","input":{}}`, "model_id"},
		{"model_id blank", `{"model_id":"  "}`, "model_id"},
		{"model_id not a string", `{"model_id":5}`, "model_id"},
		{"model empty", `{"model":""}`, "model"},
		{"model and model_id", `{"model":"a","model_id":"b"}`, "model"},
		{"id with dot", `{"model_id":"m","id":"a.b"}`, "id"},
		{"id empty", `{"model_id":"m","id":""}`, "id"},
		{"id too long", `{"model_id":"m","id":"` + strings.Repeat("x", publisher.MaxIDLen+1) + `"}`, "id"},
		{"id number", `{"model_id":"m","id":7}`, "id"},
		{"mode unknown", `{"model_id":"m","mode":"batch"}`, "mode"},
		{"mode not a string", `{"model_id":"m","mode":1}`, "mode"},
		{"priority unknown", `{"model_id":"m","priority":"urgent"}`, "priority"},
		{"timeout negative seconds", `{"model_id":"m","timeout":-5}`, "timeout"},
		{"timeout negative string", `{"model_id":"m","timeout":"-1s"}`, "timeout"},
		{"timeout garbage", `{"model_id":"m","timeout":"soon"}`, "timeout"},
		{"timeout bool", `{"model_id":"m","timeout":true}`, "timeout"},
		{"timeout overflow", `{"model_id":"m","timeout":1e300}`, "timeout"},
		{"start_timeout at fal's floor", `{"model_id":"m","start_timeout":0.1}`, "start_timeout"},
		{"start_timeout negative", `{"model_id":"m","start_timeout":"-1s"}`, "start_timeout"},
		{"start_timeout garbage", `{"model_id":"m","start_timeout":"later"}`, "start_timeout"},
		{"media_expires_in fraction", `{"model_id":"m","media_expires_in":"1.5s"}`, "media_expires_in"},
		{"media_expires_in under a second", `{"model_id":"m","media_expires_in":"500ms"}`, "media_expires_in"},
		{"media_expires_in bool", `{"model_id":"m","media_expires_in":true}`, "media_expires_in"},
		{"tenant with dot", `{"model_id":"m","tenant":"a.b"}`, "tenant"},
		{"tenant too long", `{"model_id":"m","tenant":"` + strings.Repeat("t", publisher.MaxTenantLen+1) + `"}`, "tenant"},
		{"tenant number", `{"model_id":"m","tenant":7}`, "tenant"},
		{"result_subject wildcard", `{"model_id":"m","result_subject":"a.*"}`, "result_subject"},
		{"result_subject gt", `{"model_id":"m","result_subject":"a.>"}`, "result_subject"},
		{"result_subject empty token", `{"model_id":"m","result_subject":"a..b"}`, "result_subject"},
		{"result_subject space", `{"model_id":"m","result_subject":"a b"}`, "result_subject"},
		{"result_subject number", `{"model_id":"m","result_subject":1}`, "result_subject"},
		{"input array", `{"model_id":"m","input":[1]}`, "input"},
		{"input string", `{"model_id":"m","input":"{}"}`, "input"},
		{"input null", `{"model_id":"m","input":null}`, "input"},
		{"input_params array", `{"model":"m","input_params":[]}`, "input_params"},
		{"input and input_params", `{"model_id":"m","input":{},"input_params":{}}`, "input_params"},
		{"unknown key next to input", `{"model_id":"m","input":{},"prompt":"p"}`, "prompt"},
		{"unknown key next to input_params", `{"model":"m","input_params":{},"seed":1}`, "seed"},
		{"image_input number", `{"model":"m","image_input":5}`, "image_input"},
		{"image_input empty string", `{"model":"m","image_input":""}`, "image_input"},
		{"image_input empty list", `{"model":"m","image_input":[]}`, "image_input"},
		{"image_input list of numbers", `{"model":"m","image_input":[1]}`, "image_input"},
		{"image_input object", `{"model":"m","image_input":{"url":"x"}}`, "image_input"},
		{"image_input collides", `{"model":"m","input_params":{"image_url":"a"},"image_input":"b"}`, "image_input"},
		{"progress string", `{"model_id":"m","input":{},"progress":"yes"}`, "progress"},
		{"progress number", `{"model_id":"m","progress":1}`, "progress"},
		{"use_streaming string", `{"model":"m","use_streaming":"yes"}`, "use_streaming"},
		{"use_streaming true with sync", `{"model":"m","use_streaming":true,"mode":"sync"}`, "use_streaming"},
		{"use_streaming false with stream", `{"model":"m","use_streaming":false,"mode":"stream"}`, "use_streaming"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := publisher.DecodeTrigger([]byte(tt.body))
			require.Nil(t, got)
			require.ErrorIs(t, err, publisher.ErrInvalidTrigger)
			te, ok := errors.AsType[*publisher.TriggerError](err)
			require.True(t, ok, "want *TriggerError, got %T", err)
			require.Equal(t, tt.field, te.Field, "error: %v", err)
			require.NotEmpty(t, te.Reason)
			wantPrefix := "trigger: " + tt.field + ": "
			if tt.field == "" {
				wantPrefix = "trigger: body: "
			}
			require.True(t, strings.HasPrefix(err.Error(), wantPrefix), "error %q lacks prefix %q", err, wantPrefix)
		})
	}
}

func TestTriggerErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"missing model", `{}`, "trigger: model_id: required"},
		{"not an object", `[]`, "trigger: body: not a JSON object"},
		{"bad id", `{"model_id":"m","id":"a b"}`, `trigger: id: must be 1 to 128 characters, each a letter, digit, '-' or '_' (got "a b")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := publisher.DecodeTrigger([]byte(tt.body))
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestResolveID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trigger *publisher.Trigger
		msgID   string
		seq     uint64
		want    string
	}{
		{"trigger id wins", &publisher.Trigger{ID: "mine"}, "hdr", 3, "mine"},
		{"msg id when no trigger id", &publisher.Trigger{}, "hdr-1", 3, "hdr-1"},
		{"msg id with nil trigger", nil, "hdr_2", 3, "hdr_2"},
		{"invalid msg id falls back to seq", &publisher.Trigger{}, "a.b", 42, "seq-42"},
		{"no msg id", nil, "", 7, "seq-7"},
		{"too long msg id", nil, strings.Repeat("a", publisher.MaxIDLen+1), 8, "seq-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := publisher.ResolveID(tt.trigger, tt.msgID, tt.seq)
			require.Equal(t, tt.want, got)
			require.True(t, publisher.ValidID(got))
		})
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"Job_1-x", true},
		{strings.Repeat("z", publisher.MaxIDLen), true},
		{strings.Repeat("z", publisher.MaxIDLen+1), false},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{"é", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, publisher.ValidID(tt.id))
		})
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"string", `"2m"`, 2 * time.Minute, false},
		{"seconds int", `30`, 30 * time.Second, false},
		{"seconds fraction", `0.25`, 250 * time.Millisecond, false},
		{"zero", `0`, 0, false},
		{"negative number", `-1`, 0, true},
		{"negative string", `"-3s"`, 0, true},
		{"no unit", `"30"`, 0, true},
		{"bool", `false`, 0, true},
		{"too large", `1e20`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d publisher.Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, time.Duration(d))
			b, err := json.Marshal(d)
			require.NoError(t, err)
			require.Equal(t, `"`+tt.want.String()+`"`, string(b))
		})
	}
}

func TestErrorEvent(t *testing.T) {
	t.Parallel()
	e := &publisher.Error{ID: "job-1", Code: publisher.CodeTimeout, Message: "no result within 1h"}
	require.EqualError(t, e, "fal job job-1: timeout: no result within 1h")

	wrapped := errors.Join(errors.New("other"), e)
	require.ErrorIs(t, wrapped, &publisher.Error{Code: publisher.CodeTimeout})
	require.NotErrorIs(t, wrapped, &publisher.Error{Code: publisher.CodeCanceled})
	require.NotErrorIs(t, wrapped, &publisher.Error{})
	got, ok := errors.AsType[*publisher.Error](wrapped)
	require.True(t, ok)
	require.Same(t, e, got)
	require.Equal(t, publisher.CodeTimeout, publisher.ErrorCode(wrapped))
	require.Equal(t, publisher.Code(""), publisher.ErrorCode(errors.New("x")))
}

func FuzzDecodeTrigger(f *testing.F) {
	for _, s := range []string{
		`{"model_id":"fal-ai/flux/dev","input":{"prompt":"a cat"}}`,
		`{"id":"j","model_id":"m","input":{},"mode":"sync","metadata":{"a":"<b>"},"priority":"low","timeout":"1s","result_subject":"a.b"}`,
		`{"model_id":"m","prompt":"p","seed":18446744073709551616,"image_size":{"width":1,"height":2}}`,
		`{"model":"m","input_params":{"x":1},"image_input":["u"],"use_streaming":true}`,
		`{"model":"m","image_input":"u","timeout":2.5}`,
		`{"model_id":"m","input":{"a":1,"a":2}," ":null}`,
		`{"model_id":"\u003c","a\u0041":"\ud800"}`,
		`[]`, `{`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		t1, err := publisher.DecodeTrigger(body)
		if err != nil {
			require.Nil(t, t1)
			require.ErrorIs(t, err, publisher.ErrInvalidTrigger)
			return
		}
		var obj map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(t1.Input, &obj), "input is not an object: %s", t1.Input)
		require.NotNil(t, obj)

		b1, err := json.Marshal(t1)
		require.NoError(t, err)
		t2, err := publisher.DecodeTrigger(b1)
		require.NoError(t, err, "re-decoding %s", b1)
		b2, err := json.Marshal(t2)
		require.NoError(t, err)
		require.Equal(t, string(b1), string(b2))
		// Scalar fields are equal; JSON fields are equal up to encoding/json's
		// HTML escaping, which the byte comparison above covers.
		t1.Input, t2.Input, t1.Metadata, t2.Metadata = nil, nil, nil, nil
		require.Equal(t, t1, t2)
	})
}
