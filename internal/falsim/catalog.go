package falsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// modelKind selects a model's input schema and output shape.
type modelKind uint8

const (
	kindImage   modelKind = iota // text-to-image (§8.2)
	kindVideo                    // text-to-video (§8.3)
	kindCaption                  // florence-2 image-to-text (§8.4)
	kindVLM                      // llava image+prompt to text, streams partial outputs (§8.4)
	kindEcho                     // a workflow that returns its input
)

// model is one catalog endpoint.
type model struct {
	id          string
	app         string
	kind        modelKind
	latency     time.Duration // typical run time before jitter
	concurrency int           // runners
	streams     bool          // has a /stream endpoint
	defaultSize string        // image_size preset when absent
	formatField string        // "output_format" or "format"
	caption     string        // text for caption and VLM models
	// HonoursCancel: the app stops when fal signals a cancel of a running
	// request (the result becomes 499); otherwise it finishes, is billed,
	// and its output is the result. "_sim.cancel" overrides it.
	HonoursCancel bool
	price         float64 // USD per unit, for the Platform API's pricing
	unit          string  // fal's billing unit: image, megapixels, second, request
}

// catalog is the set of endpoints the simulator serves, keyed by full
// endpoint id. Latencies and runner counts are rough shapes of the real
// services, scaled down so that a demo feels alive without being slow.
var catalog = func() map[string]*model {
	ms := []*model{
		{id: "fal-ai/flux/schnell", kind: kindImage, latency: 800 * time.Millisecond, concurrency: 8, streams: true, defaultSize: "landscape_4_3", formatField: "output_format", HonoursCancel: true, price: 0.003, unit: UnitMegapixels},
		{id: "fal-ai/flux/dev", kind: kindImage, latency: 2500 * time.Millisecond, concurrency: 4, defaultSize: "landscape_4_3", formatField: "output_format", HonoursCancel: true, price: 0.025, unit: UnitImage},
		{id: "fal-ai/fast-sdxl", kind: kindImage, latency: 1500 * time.Millisecond, concurrency: 8, defaultSize: "square_hd", formatField: "format", HonoursCancel: false, price: 0.0025, unit: UnitImage},
		{id: "fal-ai/flux-pro/v1.1", kind: kindImage, latency: 3 * time.Second, concurrency: 4, defaultSize: "landscape_4_3", formatField: "output_format", HonoursCancel: true, price: 0.04, unit: UnitImage},
		{id: "fal-ai/kling-video/v1.6/standard/text-to-video", kind: kindVideo, latency: 5 * time.Second, concurrency: 2, HonoursCancel: false, price: 0.045, unit: UnitSecond},
		{id: "fal-ai/florence-2-large/caption", kind: kindCaption, latency: 600 * time.Millisecond, concurrency: 8, caption: "A cat sitting on a windowsill.", price: 0.0005, unit: UnitRequest},
		{id: "fal-ai/florence-2-large/detailed-caption", kind: kindCaption, latency: 800 * time.Millisecond, concurrency: 8, caption: "The image shows a grey tabby cat sitting on a white windowsill, looking out of the window at a garden.", price: 0.0005, unit: UnitRequest},
		{id: "fal-ai/florence-2-large/more-detailed-caption", kind: kindCaption, latency: time.Second, concurrency: 8, caption: "The image shows a grey tabby cat with green eyes sitting on a white wooden windowsill. Behind the glass is a garden with green shrubs and a red brick wall, lit by soft afternoon light.", price: 0.0005, unit: UnitRequest},
		{id: "fal-ai/llavav15-13b", kind: kindVLM, latency: 2 * time.Second, concurrency: 4, streams: true, caption: "The image shows a cat sitting on a windowsill and looking outside.", HonoursCancel: true, price: 0.001, unit: UnitRequest},
		{id: "workflows/falsim/echo", kind: kindEcho, latency: 200 * time.Millisecond, concurrency: 8, HonoursCancel: true, price: 0.0001, unit: UnitRequest},
	}
	out := make(map[string]*model, len(ms))
	for _, m := range ms {
		segs := strings.Split(m.id, "/")
		m.app = strings.Join(segs[:appSegments(segs[0])], "/")
		out[m.id] = m
	}
	return out
}()

// Billing units of the Platform API's pricing, as fal names them.
const (
	UnitImage      = "image"      // per output image
	UnitMegapixels = "megapixels" // per megapixel of output (width × height / 1e6, rounded up)
	UnitSecond     = "second"     // per second of output video
	UnitRequest    = "request"    // per request
)

// ModelIDs lists the endpoint ids the simulator serves, sorted.
func ModelIDs() []string {
	ids := make([]string, 0, len(catalog))
	for id := range catalog {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// imagePresets are fal's image_size presets (§8.1).
var imagePresets = map[string][2]int{
	"square_hd":      {1024, 1024},
	"square":         {512, 512},
	"portrait_4_3":   {768, 1024},
	"portrait_16_9":  {576, 1024},
	"landscape_4_3":  {1024, 768},
	"landscape_16_9": {1024, 576},
}

const presetList = "'square_hd', 'square', 'portrait_4_3', 'portrait_16_9', 'landscape_4_3' or 'landscape_16_9'"

// maxDimension is fal's toolkit limit on an image side.
const maxDimension = 14142

// Fail values accepted in "_sim.fail": each makes the request complete and
// its result return the matching error (fal-protocol §7).
const (
	FailContentPolicy      = "content_policy_violation" // 422 format A
	FailNoMediaGenerated   = "no_media_generated"       // 422 format A
	FailInternalError      = "internal_server_error"    // 500 format A
	FailRequestTimeout     = "request_timeout"          // 504, X-Fal-Request-Timeout-Type: user
	FailStartupTimeout     = "startup_timeout"          // 504 without the user header
	FailRunnerDisconnected = "runner_disconnected"      // 503 request error
	FailGenerationTimeout  = "generation_timeout"       // 504 format A
)

var failValues = []string{FailContentPolicy, FailNoMediaGenerated, FailInternalError, FailRequestTimeout, FailStartupTimeout, FailRunnerDisconnected, FailGenerationTimeout}

// Values of "_sim.cancel".
const (
	CancelHonour = "honour" // the app stops on a cancel: the result is 499
	CancelIgnore = "ignore" // the app finishes: billed, its output is the result
)

// detail is one entry of a format A error body (fal-protocol §7.1).
type detail struct {
	Loc   []any           `json:"loc"`
	Msg   string          `json:"msg"`
	Type  string          `json:"type"`
	URL   string          `json:"url,omitempty"`
	Ctx   map[string]any  `json:"ctx,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

// errorURL is the documentation link of an error type: fal's page for fal's
// own types, pydantic's for schema errors, as the real endpoints do.
func errorURL(typ string) string {
	switch typ {
	case FailContentPolicy, FailNoMediaGenerated, FailInternalError, "image_too_large", "image_too_small", FailGenerationTimeout:
		return "https://docs.fal.ai/errors#" + typ
	}
	return "https://errors.pydantic.dev/2.10/v/" + typ
}

func newDetail(loc []any, typ, msg string, input any, ctx map[string]any) detail {
	d := detail{Loc: loc, Msg: msg, Type: typ, URL: errorURL(typ), Ctx: ctx}
	if input != nil {
		d.Input = mustMarshal(input)
	}
	return d
}

// detailBody is a format A body.
func detailBody(ds []detail) []byte {
	return mustMarshal(struct {
		Detail []detail `json:"detail"`
	}{ds})
}

// params are a validated input, resolved with the model's defaults.
type params struct {
	prompt    string
	width     int
	height    int
	numImages int
	seed      json.Number // "" when absent
	format    string      // "png" or "jpeg"
	syncMode  bool
	imageURL  string
	duration  string
	aspect    string
	input     map[string]any // the input without "_sim" (echo output)
	ctl       simControl
}

// simControl is the per-request "_sim" object.
type simControl struct {
	latency    time.Duration
	hasLatency bool
	fail       string
	// failAttempts > 0 fails only the first failAttempts attempts; later
	// ones (server-side retries) succeed.
	failAttempts  int
	cancel        string // "", CancelHonour or CancelIgnore
	signGatewayID bool
}

// validator collects format A details while reading one input object.
type validator struct {
	in map[string]any
	ds []detail
}

func (v *validator) add(loc []any, typ, msg string, input any, ctx map[string]any) {
	v.ds = append(v.ds, newDetail(loc, typ, msg, input, ctx))
}

func (v *validator) missing(field string) {
	v.add([]any{"body", field}, "missing", "field required", v.in, nil)
}

// str reads a string field; ok is false when it is absent or invalid.
func (v *validator) str(field string, required bool) (string, bool) {
	raw, present := v.in[field]
	if !present || raw == nil {
		if required {
			v.missing(field)
		}
		return "", false
	}
	s, isStr := raw.(string)
	if !isStr {
		v.add([]any{"body", field}, "string_type", "Input should be a valid string", raw, nil)
		return "", false
	}
	return s, true
}

// intIn reads an optional integer field and checks lo ≤ n ≤ hi.
func (v *validator) intIn(loc []any, raw any, lo, hi int) (int, bool) {
	n, ok := toInt(raw)
	if !ok {
		v.add(loc, "int_type", "Input should be a valid integer", raw, nil)
		return 0, false
	}
	if n < int64(lo) {
		v.add(loc, "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %d", lo), raw, map[string]any{"ge": lo})
		return 0, false
	}
	if n > int64(hi) {
		v.add(loc, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %d", hi), raw, map[string]any{"le": hi})
		return 0, false
	}
	return int(n), true
}

// enum reads an optional string field that must be one of values.
func (v *validator) enum(field string, values ...string) (string, bool) {
	s, ok := v.str(field, false)
	if !ok {
		return "", false
	}
	for _, want := range values {
		if s == want {
			return s, true
		}
	}
	quoted := make([]string, len(values))
	for i, w := range values {
		quoted[i] = "'" + w + "'"
	}
	expected := strings.Join(quoted, ", ")
	if len(quoted) > 1 {
		expected = strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	}
	v.add([]any{"body", field}, "literal_error", "Input should be "+expected, s, map[string]any{"expected": expected})
	return "", false
}

// toInt accepts JSON integers, and floats with no fractional part as
// pydantic's lax mode does.
func toInt(raw any) (int64, bool) {
	num, ok := raw.(json.Number)
	if !ok {
		return 0, false
	}
	if n, err := num.Int64(); err == nil {
		return n, true
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// validate parses and checks an input against the model's schema. It
// returns params (always, with whatever "_sim" held that was valid) and,
// for an invalid input, the format A details of a 422.
func (m *model) validate(body []byte) (*params, []detail) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil || dec.More() {
		msg := "JSON decode error"
		ctx := map[string]any{"error": "Expecting value"}
		if err != nil {
			ctx["error"] = err.Error()
		}
		return &params{numImages: 1}, []detail{newDetail([]any{"body", 0}, "json_invalid", msg, nil, ctx)}
	}
	in, ok := raw.(map[string]any)
	if !ok {
		return &params{numImages: 1}, []detail{newDetail([]any{"body"}, "model_attributes_type", "Input should be a valid dictionary or object to extract fields from", raw, nil)}
	}
	v := &validator{in: in}
	p := &params{numImages: 1, format: "png"}
	if ctl, present := in["_sim"]; present {
		delete(in, "_sim") // never echoed back: it is the simulator's, not the model's
		p.ctl = v.simControl(ctl)
	}
	p.input = in

	switch m.kind {
	case kindImage:
		m.validateImage(v, p)
	case kindVideo:
		p.prompt, _ = v.str("prompt", true)
		p.duration = "5"
		if d, ok := v.enum("duration", "5", "10"); ok {
			p.duration = d
		}
		p.aspect = "16:9"
		if a, ok := v.enum("aspect_ratio", "16:9", "9:16", "1:1"); ok {
			p.aspect = a
		}
	case kindCaption:
		p.imageURL = v.imageURL()
	case kindVLM:
		p.imageURL = v.imageURL()
		p.prompt, _ = v.str("prompt", true)
		if raw, present := in["max_tokens"]; present {
			v.intIn([]any{"body", "max_tokens"}, raw, 1, 4096)
		}
	case kindEcho:
	}
	if len(v.ds) > 0 {
		return p, v.ds
	}
	return p, nil
}

func (m *model) validateImage(v *validator, p *params) {
	p.prompt, _ = v.str("prompt", true)
	p.width, p.height = imagePresets[m.defaultSize][0], imagePresets[m.defaultSize][1]
	switch size := v.in["image_size"].(type) {
	case nil:
	case string:
		wh, ok := imagePresets[size]
		if !ok {
			v.add([]any{"body", "image_size"}, "literal_error", "Input should be "+presetList, size, map[string]any{"expected": presetList})
			break
		}
		p.width, p.height = wh[0], wh[1]
	case map[string]any:
		for _, dim := range []struct {
			name string
			dst  *int
		}{{"width", &p.width}, {"height", &p.height}} {
			raw, present := size[dim.name]
			loc := []any{"body", "image_size", dim.name}
			if !present {
				v.add(loc, "missing", "field required", size, nil)
				continue
			}
			n, ok := toInt(raw)
			switch {
			case !ok:
				v.add(loc, "int_type", "Input should be a valid integer", raw, nil)
			case n <= 0:
				v.add(loc, "greater_than", "Input should be greater than 0", raw, map[string]any{"gt": 0})
			case n > maxDimension:
				v.add(loc, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %d", maxDimension), raw, map[string]any{"le": maxDimension})
			default:
				*dim.dst = int(n)
			}
		}
	default:
		v.add([]any{"body", "image_size"}, "model_type", "Input should be a valid dictionary or instance of ImageSize", size, map[string]any{"class_name": "ImageSize"})
	}
	if raw, present := v.in["num_images"]; present && raw != nil {
		if n, ok := v.intIn([]any{"body", "num_images"}, raw, 1, 4); ok {
			p.numImages = n
		}
	}
	if raw, present := v.in["num_inference_steps"]; present && raw != nil {
		v.intIn([]any{"body", "num_inference_steps"}, raw, 1, 50)
	}
	if raw, present := v.in["seed"]; present && raw != nil {
		num, ok := raw.(json.Number)
		if !ok || !isInteger(num.String()) {
			v.add([]any{"body", "seed"}, "int_type", "Input should be a valid integer", raw, nil)
		} else {
			p.seed = num
		}
	}
	if f, ok := v.enum(m.formatField, "jpeg", "png"); ok {
		p.format = f
	}
	if raw, present := v.in["sync_mode"]; present && raw != nil {
		b, ok := raw.(bool)
		if !ok {
			v.add([]any{"body", "sync_mode"}, "bool_type", "Input should be a valid boolean", raw, nil)
		}
		p.syncMode = b
	}
}

// isInteger reports whether a JSON number literal is an integer of any size
// (seeds above 2^53 must survive untouched).
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return allDigits(s)
}

// imageURL reads the required image_url: an http(s) URL with a host, or a
// data: URI. Anything else is a 422 at loc ["body","image_url"].
func (v *validator) imageURL() string {
	s, ok := v.str("image_url", true)
	if !ok {
		return ""
	}
	loc := []any{"body", "image_url"}
	if strings.HasPrefix(s, "data:") {
		if !strings.Contains(s, ",") {
			v.add(loc, "url_parsing", "Input should be a valid URL, invalid data URI", s, nil)
			return ""
		}
		return s
	}
	if s == "" {
		v.add(loc, "url_parsing", "Input should be a valid URL, input is empty", s, nil)
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		v.add(loc, "url_parsing", "Input should be a valid URL, relative URL without a base", s, nil)
		return ""
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		v.add(loc, "url_scheme", "URL scheme should be 'http', 'https' or 'data'", s, map[string]any{"expected_schemes": "'http', 'https' or 'data'"})
		return ""
	}
	if u.Host == "" {
		v.add(loc, "url_parsing", "Input should be a valid URL, empty host", s, nil)
		return ""
	}
	return s
}

// simControl reads the "_sim" object.
func (v *validator) simControl(raw any) simControl {
	var c simControl
	obj, ok := raw.(map[string]any)
	if !ok {
		v.add([]any{"body", "_sim"}, "model_type", "Input should be an object with latency_ms, fail, fail_attempts, cancel and sign_gateway_id", raw, nil)
		return c
	}
	for k, val := range obj {
		switch k {
		case "latency_ms":
			if n, ok := v.intIn([]any{"body", "_sim", "latency_ms"}, val, 0, 600000); ok {
				c.latency, c.hasLatency = time.Duration(n)*time.Millisecond, true
			}
		case "fail":
			s, isStr := val.(string)
			known := false
			for _, f := range failValues {
				known = known || s == f
			}
			if !isStr || !known {
				v.add([]any{"body", "_sim", "fail"}, "literal_error", "Input should be one of "+strings.Join(failValues, ", "), val, nil)
				continue
			}
			c.fail = s
		case "fail_attempts":
			if n, ok := v.intIn([]any{"body", "_sim", "fail_attempts"}, val, 1, 1000); ok {
				c.failAttempts = n
			}
		case "cancel":
			s, isStr := val.(string)
			if !isStr || (s != CancelHonour && s != CancelIgnore) {
				v.add([]any{"body", "_sim", "cancel"}, "literal_error", "Input should be 'honour' or 'ignore'", val, nil)
				continue
			}
			c.cancel = s
		case "sign_gateway_id":
			b, isBool := val.(bool)
			if !isBool {
				v.add([]any{"body", "_sim", "sign_gateway_id"}, "bool_type", "Input should be a valid boolean", val, nil)
				continue
			}
			c.signGatewayID = b
		default:
			v.add([]any{"body", "_sim", k}, "extra_forbidden", "Extra inputs are not permitted", val, nil)
		}
	}
	return c
}

// outcome is what a request produces: the result's HTTP status, body and
// error headers.
type outcome struct {
	code        int
	body        []byte
	errorType   string // X-Fal-Error-Type and status error_type
	errMsg      string // status "error"
	timeoutType string // X-Fal-Request-Timeout-Type
	// final sends X-Fal-Retryable: false: the model's deterministic
	// verdict, which asking again cannot change.
	final bool
	// retried: fal's queue retries an attempt that ends so (503, 504 and
	// connection errors from the runner; not 500, not a user timeout).
	retried bool
}

func (o *outcome) ok() bool { return o.code >= 200 && o.code < 300 }

// requestError is a format B body (fal-protocol §7.1 B).
func requestError(code int, msg, typ string) *outcome {
	return &outcome{code: code, errorType: typ, errMsg: msg, body: mustMarshal(struct {
		Detail    string `json:"detail"`
		ErrorType string `json:"error_type"`
	}{msg, typ})}
}

// modelError is a format A body with one detail.
func modelError(code int, loc []any, msg, typ string, input any) *outcome {
	return &outcome{code: code, errorType: typ, errMsg: msg, final: true, body: detailBody([]detail{newDetail(loc, typ, msg, input, nil)})}
}

var (
	cancelledOutcome = requestError(499, "Request cancelled", "client_cancelled")
	// concurrencyLimitOutcome is fal.run's answer at the account's limit.
	concurrencyLimitOutcome = requestError(http.StatusTooManyRequests, "Maximum number of concurrent requests reached for this account", "concurrent_requests_limit")
	timeoutOutcome          = func() *outcome {
		o := requestError(504, "Request timed out", "request_timeout")
		o.timeoutType = "user"
		return o
	}()
)

// failOutcome is the result of a "_sim.fail" request.
func failOutcome(fail, prompt string) *outcome {
	switch fail {
	case FailContentPolicy:
		return modelError(422, []any{"body", "prompt"}, "The content could not be processed because it contained material flagged by a content checker.", fail, prompt)
	case FailNoMediaGenerated:
		return modelError(422, []any{"body"}, "No media was generated; try another prompt or seed.", fail, nil)
	case FailInternalError:
		return modelError(500, []any{"body"}, "Internal server error while running the model.", fail, nil)
	case FailRequestTimeout:
		return timeoutOutcome
	case FailStartupTimeout:
		o := requestError(504, "Runner startup timed out", "startup_timeout")
		o.retried = true
		return o
	case FailRunnerDisconnected:
		o := requestError(503, "Runner disconnected", "runner_disconnected")
		o.retried = true
		return o
	case FailGenerationTimeout:
		o := modelError(504, []any{"body"}, "Generation timed out.", fail, nil)
		o.final, o.retried = false, true
		return o
	}
	return nil
}

// fileWords are the first path segments of fal's CDN file URLs.
var fileWords = []string{"penguin", "rabbit", "kangaroo", "zebra", "koala", "panda", "tiger", "lion", "monkey", "elephant"}

// outputBuilder renders a model's output for a request.
type outputBuilder struct {
	base      string // "http://host" for file URLs
	requestID string
	seed      uint64 // used when the input has none; any uint64, above 2^63 half the time
	runTime   time.Duration
}

// fileURL is the URL of output file i; suffix ends its name (".mp4",
// "_1024x768.png").
func (b outputBuilder) fileURL(i int, suffix string) string {
	word := fileWords[int(b.seed%uint64(len(fileWords)))]
	return fmt.Sprintf("%s/files/%s/%s_%d%s", b.base, word, b.requestID, i, suffix)
}

// output is the success body of the model for p.
func (m *model) output(p *params, b outputBuilder) []byte {
	switch m.kind {
	case kindImage:
		type image struct {
			URL         string `json:"url"`
			Width       int    `json:"width"`
			Height      int    `json:"height"`
			ContentType string `json:"content_type"`
		}
		out := struct {
			Images  []image            `json:"images"`
			Timings map[string]float64 `json:"timings"`
			Seed    json.Number        `json:"seed"`
			NSFW    []bool             `json:"has_nsfw_concepts"`
			Prompt  string             `json:"prompt"`
		}{
			Timings: map[string]float64{"inference": roundSeconds(b.runTime)},
			Seed:    p.seed,
			NSFW:    make([]bool, p.numImages),
			Prompt:  p.prompt,
		}
		if out.Seed == "" {
			out.Seed = json.Number(strconv.FormatUint(b.seed, 10))
		}
		ext, ctype := "png", "image/png"
		if p.format == "jpeg" {
			ext, ctype = "jpg", "image/jpeg"
		}
		for i := range p.numImages {
			// The name states the size, so the file served has it.
			u := b.fileURL(i, fmt.Sprintf("_%dx%d.%s", p.width, p.height, ext))
			if p.syncMode {
				u = "data:" + ctype + ";base64," + base64.StdEncoding.EncodeToString(imageBytes(p.width, p.height, p.format == "jpeg"))
			}
			out.Images = append(out.Images, image{URL: u, Width: p.width, Height: p.height, ContentType: ctype})
		}
		return mustMarshal(out)
	case kindVideo:
		type file struct {
			URL         string `json:"url"`
			ContentType string `json:"content_type"`
			FileName    string `json:"file_name"`
			FileSize    int    `json:"file_size"`
		}
		return mustMarshal(struct {
			Video file `json:"video"`
		}{file{URL: b.fileURL(0, ".mp4"), ContentType: "video/mp4", FileName: "output.mp4", FileSize: len(mp4Bytes())}})
	case kindCaption:
		return mustMarshal(struct {
			Results string `json:"results"`
		}{m.caption})
	case kindVLM:
		return vlmEvent(m.caption, false)
	default:
		return mustMarshal(struct {
			Output map[string]any `json:"output"`
		}{p.input})
	}
}

func vlmEvent(text string, partial bool) []byte {
	return mustMarshal(struct {
		Output  string `json:"output"`
		Partial bool   `json:"partial"`
	}{text, partial})
}

// partials are the events a streaming model sends before its final output:
// progress events for flux/schnell (as in fal's streaming docs), growing
// partial texts for llava.
func (m *model) partials() [][]byte {
	switch m.kind {
	case kindImage:
		var out [][]byte
		for _, pr := range []float64{0.25, 0.5, 0.75} {
			out = append(out, mustMarshal(struct {
				Progress float64 `json:"progress"`
				Message  string  `json:"message"`
			}{pr, "Generating..."}))
		}
		return out
	case kindVLM:
		words := strings.Fields(m.caption)
		var out [][]byte
		for i := 1; i < len(words); i++ {
			out = append(out, vlmEvent(strings.Join(words[:i], " "), true))
		}
		return out
	}
	return nil
}

func roundSeconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// mustMarshal encodes values the simulator builds itself, without HTML
// escaping (fal is a Python service and writes '<' as is).
func mustMarshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("falsim: marshal %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
