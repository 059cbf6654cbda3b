package falsim

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"strconv"
	"strings"
	"sync"
)

// Media the outputs point to. They are generated on demand, so that every
// /files URL answers with real, decodable bytes without shipping binary
// files in the repository. An image URL names its size (…_1024x768.png),
// and the file served has the width and height the output states.
var mp4Bytes = sync.OnceValue(buildMP4)

// mediaSize is the side of the square image served for a URL that names no
// size.
const mediaSize = 64

// maxMediaPixels bounds the images generated: a larger size is served
// scaled down to fit, keeping its aspect ratio (no preset comes near it).
const maxMediaPixels = 4 << 20

// imageKey names one generated image.
type imageKey struct {
	w, h int
	jpeg bool
}

// images caches encoded images by size; at most maxCachedImages sizes are
// kept, the rest are encoded per request.
var images = struct {
	sync.Mutex
	m map[imageKey][]byte
}{m: map[imageKey][]byte{}}

const maxCachedImages = 16

// imageBytes is a w×h image (scaled down past maxMediaPixels), PNG or JPEG.
func imageBytes(w, h int, asJPEG bool) []byte {
	w, h = fitPixels(w, h)
	k := imageKey{w, h, asJPEG}
	images.Lock()
	b, ok := images.m[k]
	images.Unlock()
	if ok {
		return b
	}
	b = encodeImage(w, h, asJPEG)
	images.Lock()
	if len(images.m) < maxCachedImages {
		images.m[k] = b
	}
	images.Unlock()
	return b
}

// fitPixels scales w×h down to at most maxMediaPixels, each side at least 1.
func fitPixels(w, h int) (int, int) {
	w, h = max(w, 1), max(h, 1)
	if w*h <= maxMediaPixels {
		return w, h
	}
	f := math.Sqrt(float64(maxMediaPixels) / float64(w*h))
	return max(int(float64(w)*f), 1), max(int(float64(h)*f), 1)
}

// gradient is a w×h diagonal gradient: something a person can look at.
func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		g := uint8(y * 255 / max(h-1, 1))
		for x := range w {
			r := uint8(x * 255 / max(w-1, 1))
			img.SetNRGBA(x, y, color.NRGBA{R: r, G: g, B: 255 - uint8((int(r)+int(g))/2), A: 255})
		}
	}
	return img
}

func encodeImage(w, h int, asJPEG bool) []byte {
	var buf bytes.Buffer
	var err error
	if asJPEG {
		err = jpeg.Encode(&buf, gradient(w, h), &jpeg.Options{Quality: 85})
	} else {
		err = png.Encode(&buf, gradient(w, h))
	}
	if err != nil {
		panic("falsim: encode image: " + err.Error())
	}
	return buf.Bytes()
}

// imageFileSize is the size an image file name states ("x_0_1024x768.png"
// → 1024, 768), else mediaSize square.
func imageFileSize(name string) (w, h int) {
	base := name[strings.LastIndexByte(name, '/')+1:]
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	if i := strings.LastIndexByte(base, '_'); i >= 0 {
		ws, hs, ok := strings.Cut(base[i+1:], "x")
		w, werr := strconv.Atoi(ws)
		h, herr := strconv.Atoi(hs)
		if ok && werr == nil && herr == nil && w > 0 && h > 0 && w <= maxDimension && h <= maxDimension {
			return w, h
		}
	}
	return mediaSize, mediaSize
}

// The MP4 is one second of 32×32 H.264 Baseline video at 4 frames per
// second. Every frame is an IDR picture made of I_PCM macroblocks (raw
// samples), which needs no entropy coder to write by hand yet is decodable
// by any H.264 decoder.
const (
	videoSide   = 32
	videoFrames = 4
	videoScale  = 1000 // timescale: milliseconds
)

// bitWriter writes the MSB-first bit strings of H.264 syntax.
type bitWriter struct {
	buf  []byte
	cur  byte
	nbit uint
}

func (w *bitWriter) bit(b uint) {
	w.cur = w.cur<<1 | byte(b&1)
	w.nbit++
	if w.nbit == 8 {
		w.buf = append(w.buf, w.cur)
		w.cur, w.nbit = 0, 0
	}
}

func (w *bitWriter) bits(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(uint(v >> uint(i)))
	}
}

// ue writes an unsigned Exp-Golomb code.
func (w *bitWriter) ue(v uint64) {
	v++
	n := 0
	for t := v; t > 1; t >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(v, n+1)
}

// se writes a signed Exp-Golomb code.
func (w *bitWriter) se(v int64) {
	if v > 0 {
		w.ue(uint64(2*v - 1))
	} else {
		w.ue(uint64(-2 * v))
	}
}

func (w *bitWriter) align() {
	for w.nbit != 0 {
		w.bit(0)
	}
}

// trailing writes rbsp_trailing_bits.
func (w *bitWriter) trailing() []byte {
	w.bit(1)
	w.align()
	return w.buf
}

// nal wraps an RBSP into a NAL unit, inserting emulation prevention bytes.
func nal(header byte, rbsp []byte) []byte {
	out := []byte{header}
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func h264SPS() []byte {
	var w bitWriter
	w.bits(66, 8)   // profile_idc: Baseline
	w.bits(0xC0, 8) // constraint_set0 and 1, reserved zeros
	w.bits(10, 8)   // level_idc 1.0
	w.ue(0)         // seq_parameter_set_id
	w.ue(0)         // log2_max_frame_num_minus4
	w.ue(2)         // pic_order_cnt_type: output order = decode order
	w.ue(1)         // max_num_ref_frames
	w.bit(0)        // gaps_in_frame_num_value_allowed_flag
	w.ue(videoSide/16 - 1)
	w.ue(videoSide/16 - 1)
	w.bit(1) // frame_mbs_only_flag
	w.bit(1) // direct_8x8_inference_flag
	w.bit(0) // frame_cropping_flag
	w.bit(0) // vui_parameters_present_flag
	return nal(0x67, w.trailing())
}

func h264PPS() []byte {
	var w bitWriter
	w.ue(0)      // pic_parameter_set_id
	w.ue(0)      // seq_parameter_set_id
	w.bit(0)     // entropy_coding_mode_flag: CAVLC
	w.bit(0)     // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)      // num_slice_groups_minus1
	w.ue(0)      // num_ref_idx_l0_default_active_minus1
	w.ue(0)      // num_ref_idx_l1_default_active_minus1
	w.bit(0)     // weighted_pred_flag
	w.bits(0, 2) // weighted_bipred_idc
	w.se(0)      // pic_init_qp_minus26
	w.se(0)      // pic_init_qs_minus26
	w.se(0)      // chroma_qp_index_offset
	w.bit(1)     // deblocking_filter_control_present_flag
	w.bit(0)     // constrained_intra_pred_flag
	w.bit(0)     // redundant_pic_cnt_present_flag
	return nal(0x68, w.trailing())
}

// h264IDR is frame n: an IDR slice of I_PCM macroblocks, a gradient whose
// brightness moves with n. Samples stay within [16, 235] so the raw bytes
// never need emulation prevention and read as video-range YUV.
func h264IDR(n int) []byte {
	var w bitWriter
	w.ue(0)             // first_mb_in_slice
	w.ue(7)             // slice_type: I (all slices)
	w.ue(0)             // pic_parameter_set_id
	w.bits(0, 4)        // frame_num (log2_max_frame_num = 4)
	w.ue(uint64(n % 2)) // idr_pic_id: consecutive IDRs must differ
	w.bit(0)            // no_output_of_prior_pics_flag
	w.bit(0)            // long_term_reference_flag
	w.se(0)             // slice_qp_delta
	w.ue(1)             // disable_deblocking_filter_idc: off
	mbs := (videoSide / 16) * (videoSide / 16)
	for mb := range mbs {
		w.ue(25) // mb_type I_PCM
		w.align()
		mbx, mby := mb%(videoSide/16), mb/(videoSide/16)
		for y := range 16 {
			for x := range 16 {
				px, py := mbx*16+x, mby*16+y
				w.bits(uint64(16+(px+py)*3+n*10)&0xff, 8)
			}
		}
		for plane := range 2 {
			for range 64 {
				w.bits(uint64(128+(plane*2-1)*(20+n*8)), 8)
			}
		}
	}
	return nal(0x65, w.trailing())
}

// box appends an ISO BMFF box.
func box(typ string, payload ...[]byte) []byte {
	size := 8
	for _, p := range payload {
		size += len(p)
	}
	out := make([]byte, 0, size)
	out = binary.BigEndian.AppendUint32(out, uint32(size))
	out = append(out, typ...)
	for _, p := range payload {
		out = append(out, p...)
	}
	return out
}

// fullBox appends a box with a version and flags word.
func fullBox(typ string, version byte, flags uint32, payload ...[]byte) []byte {
	vf := binary.BigEndian.AppendUint32(nil, uint32(version)<<24|flags)
	return box(typ, append([][]byte{vf}, payload...)...)
}

func u32s(vs ...uint32) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.BigEndian.AppendUint32(out, v)
	}
	return out
}

func u16s(vs ...uint16) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.BigEndian.AppendUint16(out, v)
	}
	return out
}

// unityMatrix is the identity transform of mvhd and tkhd.
var unityMatrix = u32s(0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)

// buildMP4 writes ftyp, moov and mdat for the H.264 frames above.
func buildMP4() []byte {
	sps, pps := h264SPS(), h264PPS()
	var samples [][]byte
	for i := range videoFrames {
		f := h264IDR(i)
		samples = append(samples, append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...))
	}
	var mdatPayload []byte
	sizes := make([]uint32, 0, len(samples))
	for _, s := range samples {
		mdatPayload = append(mdatPayload, s...)
		sizes = append(sizes, uint32(len(s)))
	}

	ftyp := box("ftyp", []byte("isom"), u32s(0x200), []byte("isomiso2avc1mp41"))
	duration := uint32(videoScale)
	delta := duration / videoFrames

	moov := func(chunkOffset uint32) []byte {
		avcC := box("avcC",
			[]byte{1, sps[1], sps[2], sps[3], 0xFF, 0xE1},
			u16s(uint16(len(sps))), sps,
			[]byte{1}, u16s(uint16(len(pps))), pps)
		avc1 := box("avc1",
			make([]byte, 6), u16s(1), // reserved, data_reference_index
			make([]byte, 16), // pre_defined, reserved
			u16s(videoSide, videoSide),
			u32s(0x00480000, 0x00480000, 0), // resolution, reserved
			u16s(1),                         // frame_count
			make([]byte, 32),                // compressorname
			u16s(0x0018, 0xFFFF),            // depth, pre_defined
			avcC)
		stsz := fullBox("stsz", 0, 0, u32s(0, uint32(len(sizes))), u32s(sizes...))
		stbl := box("stbl",
			fullBox("stsd", 0, 0, u32s(1), avc1),
			fullBox("stts", 0, 0, u32s(1, videoFrames, delta)),
			fullBox("stsc", 0, 0, u32s(1, 1, videoFrames, 1)),
			stsz,
			fullBox("stco", 0, 0, u32s(1, chunkOffset)))
		minf := box("minf",
			fullBox("vmhd", 0, 1, u16s(0, 0, 0, 0)),
			box("dinf", fullBox("dref", 0, 0, u32s(1), fullBox("url ", 0, 1))),
			stbl)
		mdia := box("mdia",
			fullBox("mdhd", 0, 0, u32s(0, 0, videoScale, duration), u16s(0x55C4, 0)), // language "und"
			fullBox("hdlr", 0, 0, u32s(0), []byte("vide"), make([]byte, 12), []byte("VideoHandler\x00")),
			minf)
		tkhd := fullBox("tkhd", 0, 3,
			u32s(0, 0, 1, 0, duration), // creation, modification, track_ID, reserved, duration
			make([]byte, 8),            // reserved
			u16s(0, 0, 0, 0),           // layer, alternate_group, volume, reserved
			unityMatrix,
			u32s(videoSide<<16, videoSide<<16))
		mvhd := fullBox("mvhd", 0, 0,
			u32s(0, 0, videoScale, duration, 0x00010000), // creation, modification, timescale, duration, rate
			u16s(0x0100, 0), make([]byte, 8), // volume, reserved
			unityMatrix,
			make([]byte, 24), // pre_defined
			u32s(2))          // next_track_ID
		return box("moov", mvhd, box("trak", tkhd, mdia))
	}
	// The chunk offset field has a fixed size, so one sizing pass suffices.
	offset := uint32(len(ftyp) + len(moov(0)) + 8)
	return bytes.Join([][]byte{ftyp, moov(offset), box("mdat", mdatPayload)}, nil)
}
