//! BGR0 pictures, the form the pipeline, the overlay and the encoder work in (4 bytes a pixel,
//! rows without padding, as x11grab gives them): converting a decoded libav frame to one of a
//! given size ([`BgrScaler`]), and decoding a compressed still picture into one
//! ([`PictureDecoder`]: the screencast's JPEGs, the stepped source's PNGs).

use ffmpeg_next as ffmpeg;

/// Converts decoded frames to BGR0 pictures of one size, rebuilding its scaler only when the
/// frames' format or size changes.
pub struct BgrScaler {
    scaler: Option<(
        ffmpeg::format::Pixel,
        u32,
        u32,
        ffmpeg::software::scaling::Context,
    )>,
    width: u32,
    height: u32,
}

impl BgrScaler {
    pub fn new(width: u32, height: u32) -> Self {
        BgrScaler {
            scaler: None,
            width,
            height,
        }
    }

    /// Bytes per row of the pictures it makes.
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// `frame` scaled (bilinear) to this size, as a BGR0 picture.
    pub fn convert(&mut self, frame: &ffmpeg::frame::Video) -> Result<Vec<u8>, String> {
        let (format, w, h) = (frame.format(), frame.width(), frame.height());
        if self
            .scaler
            .as_ref()
            .is_none_or(|s| (s.0, s.1, s.2) != (format, w, h))
        {
            let ctx = ffmpeg::software::scaling::Context::get(
                format,
                w,
                h,
                ffmpeg::format::Pixel::BGRZ,
                self.width,
                self.height,
                ffmpeg::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| format!("scaler: {e}"))?;
            self.scaler = Some((format, w, h, ctx));
        }
        let mut bgr = ffmpeg::frame::Video::empty();
        self.scaler
            .as_mut()
            .expect("set above")
            .3
            .run(frame, &mut bgr)
            .map_err(|e| format!("scaling: {e}"))?;
        let stride = self.stride();
        let line = bgr.stride(0);
        let plane = bgr.data(0);
        let mut data = Vec::with_capacity(stride * self.height as usize);
        for row in 0..self.height as usize {
            data.extend_from_slice(&plane[row * line..row * line + stride]);
        }
        Ok(data)
    }
}

/// Decodes compressed still pictures (JPEG, PNG) into BGR0 pictures of one size.
pub struct PictureDecoder {
    decoder: ffmpeg::decoder::Video,
    scaler: BgrScaler,
}

impl PictureDecoder {
    pub fn new(codec: ffmpeg::codec::Id, width: u32, height: u32) -> Result<Self, String> {
        let found = ffmpeg::decoder::find(codec)
            .ok_or_else(|| format!("libav has no {codec:?} decoder"))?;
        let decoder = ffmpeg::codec::context::Context::new_with_codec(found)
            .decoder()
            .video()
            .map_err(|e| format!("{codec:?} decoder: {e}"))?;
        Ok(PictureDecoder {
            decoder,
            scaler: BgrScaler::new(width, height),
        })
    }

    /// Bytes per row of the pictures it returns.
    pub fn stride(&self) -> usize {
        self.scaler.stride()
    }

    /// The picture in `compressed`, or `None` if the decoder holds it back (it does not, for
    /// still-picture codecs).
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Option<Vec<u8>>, String> {
        // Each picture stands alone: libav's PNG decoder adds a picture not marked as a key
        // frame to the previous one (its "P-frame" PNGs).
        let mut packet = ffmpeg::Packet::copy(compressed);
        packet.set_flags(ffmpeg::packet::Flags::KEY);
        self.decoder
            .send_packet(&packet)
            .map_err(|e| format!("decoding: {e}"))?;
        let mut decoded = ffmpeg::frame::Video::empty();
        let mut picture = None;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            picture = Some(self.scaler.convert(&decoded)?);
        }
        Ok(picture)
    }
}
