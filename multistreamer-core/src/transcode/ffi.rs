//! The only `unsafe` in the crate besides `malloc`'s `mallopt` call: reading and writing
//! codec "extradata" (the H.264 decoder configuration record, the AAC
//! AudioSpecificConfig), which ffmpeg-next does not expose, and a few frame operations.
//! Each function copies or takes a counted reference, so no libav-owned memory escapes
//! without an owner.
#![allow(unsafe_code)]

use ffmpeg_next::codec;
use ffmpeg_next::ffi;

/// Copies `data` into the context's extradata (replacing what was there), zero-padded as
/// libav requires. For decoders before `open`, for muxing before `Parameters::from`.
pub(crate) fn set_extradata(ctx: &mut codec::Context, data: &[u8]) -> Result<(), ffmpeg_next::Error> {
    let size = i32::try_from(data.len()).map_err(|_| ffmpeg_next::Error::InvalidData)?;
    let padding = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: `ctx` owns a valid AVCodecContext. The buffer comes from av_mallocz (as the
    // field's contract requires, freed by avcodec_free_context), is `len + padding` bytes
    // and zeroed, and `data` is copied into its first `len` bytes. The old buffer, if any,
    // was allocated by libav the same way and is released with av_freep.
    unsafe {
        let raw = ctx.as_mut_ptr();
        let buf = ffi::av_mallocz(data.len() + padding) as *mut u8;
        if buf.is_null() {
            return Err(ffmpeg_next::Error::Other { errno: libc_enomem() });
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        if !(*raw).extradata.is_null() {
            ffi::av_freep(std::ptr::addr_of_mut!((*raw).extradata) as *mut std::ffi::c_void);
        }
        (*raw).extradata = buf;
        (*raw).extradata_size = size;
    }
    Ok(())
}

/// A copy of the context's extradata (empty when there is none). For encoders opened with
/// `GLOBAL_HEADER`.
pub(crate) fn extradata(ctx: &codec::Context) -> Vec<u8> {
    // SAFETY: a valid AVCodecContext; extradata is either null or `extradata_size` readable
    // bytes owned by the context, which outlives this borrow. We copy them out.
    unsafe {
        let raw = ctx.as_ptr();
        copy_out((*raw).extradata, (*raw).extradata_size)
    }
}

/// A copy of a stream's codec-parameter extradata (demuxing).
pub(crate) fn parameters_extradata(params: &codec::Parameters) -> Vec<u8> {
    // SAFETY: as for `extradata`, on a valid AVCodecParameters owned by `params`.
    unsafe {
        let raw = params.as_ptr();
        copy_out((*raw).extradata, (*raw).extradata_size)
    }
}

/// # Safety
/// `ptr` is null or points to at least `len` readable bytes.
unsafe fn copy_out(ptr: *const u8, len: i32) -> Vec<u8> {
    match usize::try_from(len) {
        Ok(n) if n > 0 && !ptr.is_null() => {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(ptr, n) }.to_vec()
        }
        _ => Vec::new(),
    }
}

const fn libc_enomem() -> i32 {
    12
}

/// Whether nobody else (an encoder) still holds a reference to the frame's buffers, so it
/// may be written again.
pub(crate) fn frame_is_writable(frame: &ffmpeg_next::util::frame::Video) -> bool {
    // SAFETY: a valid, allocated AVFrame owned by `frame`; av_frame_is_writable only reads
    // its buffer references' counts.
    unsafe { ffi::av_frame_is_writable(frame.as_ptr() as *mut ffi::AVFrame) > 0 }
}

/// A new frame referencing the same picture buffers as `frame` (counted references, no
/// copy of the pixels), with its properties (pts, picture type). `None` when out of memory.
pub(crate) fn frame_ref(frame: &ffmpeg_next::util::frame::Video) -> Option<ffmpeg_next::util::frame::Video> {
    // SAFETY: `frame` is a valid AVFrame; av_frame_clone allocates a new AVFrame that holds
    // its own references to the buffers (or returns null), and `wrap` makes the returned
    // value its only owner (freed with av_frame_free on drop).
    unsafe {
        let p = ffi::av_frame_clone(frame.as_ptr());
        if p.is_null() { None } else { Some(ffmpeg_next::util::frame::Video::wrap(p)) }
    }
}

#[cfg_attr(not(feature = "capture"), allow(dead_code))]
/// Crops `frame` in place to `width`×`height` at (`left`, `top`) by moving its data
/// pointers (no copy); false when the rectangle does not fit.
pub(crate) fn crop(frame: &mut ffmpeg_next::util::frame::Video, left: u32, top: u32, width: u32, height: u32) -> bool {
    let (fw, fh) = (frame.width(), frame.height());
    if width == 0 || height == 0 || left.saturating_add(width) > fw || top.saturating_add(height) > fh {
        return false;
    }
    // SAFETY: a valid AVFrame owned by `frame`; av_frame_apply_cropping only adjusts its
    // data pointers and dimensions within the buffers it already references.
    unsafe {
        let f = frame.as_mut_ptr();
        (*f).crop_left = left as usize;
        (*f).crop_top = top as usize;
        (*f).crop_right = (fw - left - width) as usize;
        (*f).crop_bottom = (fh - top - height) as usize;
        ffi::av_frame_apply_cropping(f, ffi::AV_FRAME_CROP_UNALIGNED as i32) >= 0
    }
}

/// Clears the codec tag of copied stream parameters (the muxer chooses its own).
pub(crate) fn clear_codec_tag(params: &mut codec::Parameters) {
    // SAFETY: a valid AVCodecParameters owned by `params`; only its tag field is written.
    unsafe { (*params.as_mut_ptr()).codec_tag = 0 };
}

/// Sets the codec tag of an output stream (e.g. `hvc1` rather than the MP4 muxer's
/// default `hev1` for HEVC whose parameter sets are all in the record).
pub(crate) fn set_stream_codec_tag(st: &mut ffmpeg_next::format::stream::StreamMut<'_>, tag: [u8; 4]) {
    // SAFETY: a valid AVStream of an output context still being set up; only the tag of
    // its codec parameters is written.
    unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = u32::from_le_bytes(tag) };
}
