//! Repeating the previous picture of the live H.264 stream without encoding it again.
//!
//! A slide that stays on screen for minutes is thousands of identical output frames, and x264
//! spends 1.4-2.7 ms on each one at 720p even though nothing changed (measured with libx264
//! `veryfast`: 4.6 CPU-s per minute of a still picture, more than the rest of a fast-mode
//! recording). A repeat is written here instead, in a few bytes: a P picture whose macroblocks
//! are all skipped. A skipped macroblock with no moving neighbour is a copy of the reference, so
//! the picture is the previous one, bit for bit, and costs the decoder next to nothing.
//!
//! The stream is kept valid by construction, and checked on the encoder's own parameter sets
//! ([`Repeater::new`] says why it cannot, and the caller then encodes repeats as before):
//! - one reference picture (`max_num_ref_frames` 1, x264 `ref=1`): x264's next picture predicts
//!   from the last picture decoded, which the repeat made identical to the one x264 knows;
//! - picture order from `frame_num` (type 2: no B-frames), so a repeat needs no order count;
//! - CAVLC (the skip run is one Exp-Golomb number; CABAC would need an arithmetic coder),
//!   no weighted prediction, one slice group, no redundant pictures, frame pictures.
//!
//! A repeat is a reference picture, so it takes the next `frame_num`; x264 does not know about
//! repeats, so the `frame_num` of each of its pictures is rewritten to follow on
//! ([`Repeater::renumber`]; an IDR picture starts again at 0). Only that fixed-width field
//! changes, after the three Exp-Golomb numbers that precede it in every slice header.
//!
//! Why not a crate: `h264-reader` reads parameter sets but writes nothing; what is needed here
//! is a dozen fields read and two written, with the emulation-prevention bytes undone and
//! redone around them.

/// Writes repeats and renumbers the encoder's pictures around them.
#[derive(Debug)]
pub struct Repeater {
    format: NalFormat,
    pps_id: u32,
    log2_max_frame_num: u32,
    macroblocks: u32,
    deblocking_control: bool,
    /// `frame_num` of the last picture written (repeat or encoded).
    frame_num: u32,
}

/// How the encoder delimits its NAL units in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NalFormat {
    /// `00 00 00 01` start codes (what libx264 gives libav).
    AnnexB,
    /// A big-endian length of this many bytes before each unit (avcC).
    Length(usize),
}

const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

impl Repeater {
    /// From the encoder's global header (`extradata`: its SPS and PPS, Annex B or avcC), or why
    /// repeats cannot be written for this stream.
    pub fn new(extradata: &[u8]) -> Result<Repeater, String> {
        let (format, units) = if extradata.first() == Some(&1) {
            let length = usize::from(extradata.get(4).ok_or("short avcC")? & 3) + 1;
            (NalFormat::Length(length), avcc_units(extradata)?)
        } else {
            (NalFormat::AnnexB, annexb_units(extradata))
        };
        let sps = units
            .iter()
            .find(|u| u.first().map(|b| b & 0x1f) == Some(NAL_SPS))
            .ok_or("no SPS in the encoder's header")?;
        let pps = units
            .iter()
            .find(|u| u.first().map(|b| b & 0x1f) == Some(NAL_PPS))
            .ok_or("no PPS in the encoder's header")?;
        let sps = Sps::parse(&unescape(&sps[1..]))?;
        let pps = Pps::parse(&unescape(&pps[1..]))?;
        Ok(Repeater {
            format,
            pps_id: pps.id,
            log2_max_frame_num: sps.log2_max_frame_num,
            macroblocks: sps.macroblocks,
            deblocking_control: pps.deblocking_control,
            frame_num: 0,
        })
    }

    fn next_frame_num(&self) -> u32 {
        (self.frame_num + 1) % (1 << self.log2_max_frame_num)
    }

    /// One packet that repeats the last picture written.
    pub fn repeat(&mut self) -> Vec<u8> {
        let frame_num = self.next_frame_num();
        self.frame_num = frame_num;
        let mut w = BitWriter::default();
        w.ue(0); // first_mb_in_slice
        w.ue(5); // slice_type: P, and every slice of the picture is P
        w.ue(self.pps_id);
        w.bits(frame_num, self.log2_max_frame_num);
        // (frame pictures only, picture order type 2: no field flag, no order count)
        w.bits(1, 1); // num_ref_idx_active_override_flag
        w.ue(0); // num_ref_idx_l0_active_minus1: the one reference
        w.bits(0, 1); // ref_pic_list_modification_flag_l0
        w.bits(0, 1); // adaptive_ref_pic_marking_mode_flag: sliding window
        w.se(0); // slice_qp_delta
        if self.deblocking_control {
            w.ue(1); // disable_deblocking_filter_idc: a copy has nothing to filter
        }
        w.ue(self.macroblocks); // mb_skip_run: every macroblock
        w.trailing();
        // nal_ref_idc 2 (a reference picture, as x264 marks its P pictures), non-IDR slice.
        let mut nal = vec![(2 << 5) | NAL_SLICE];
        nal.extend(escape(&w.finish()));
        self.frame(&[nal])
    }

    /// The encoder's `packet` with its picture's `frame_num` made to follow the last picture
    /// written; an IDR picture passes unchanged and restarts the count.
    pub fn renumber(&mut self, packet: &[u8]) -> Result<Vec<u8>, String> {
        let units = match self.format {
            NalFormat::AnnexB => annexb_units(packet),
            NalFormat::Length(n) => length_units(packet, n)?,
        };
        let mut picture = None;
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            let Some(&header) = unit.first() else {
                continue;
            };
            match header & 0x1f {
                NAL_IDR => {
                    picture = Some(0);
                    out.push(unit.to_vec());
                }
                NAL_SLICE => {
                    if header >> 5 == 0 {
                        return Err("the encoder wrote a non-reference picture".into());
                    }
                    let frame_num = *picture.get_or_insert(self.next_frame_num());
                    let mut rbsp = unescape(&unit[1..]);
                    let mut r = BitReader::new(&rbsp);
                    r.ue()?; // first_mb_in_slice
                    r.ue()?; // slice_type
                    r.ue()?; // pic_parameter_set_id
                    let at = r.position();
                    set_bits(&mut rbsp, at, self.log2_max_frame_num, frame_num)?;
                    let mut nal = vec![header];
                    nal.extend(escape(&rbsp));
                    out.push(nal);
                }
                _ => out.push(unit.to_vec()),
            }
        }
        if let Some(frame_num) = picture {
            self.frame_num = frame_num;
        }
        Ok(self.frame(&out))
    }

    fn frame(&self, units: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for unit in units {
            match self.format {
                NalFormat::AnnexB => out.extend_from_slice(&[0, 0, 0, 1]),
                NalFormat::Length(n) => {
                    out.extend_from_slice(&(unit.len() as u32).to_be_bytes()[4 - n..])
                }
            }
            out.extend_from_slice(unit);
        }
        out
    }
}

/// What a repeat needs from the sequence parameter set, which must allow it.
struct Sps {
    log2_max_frame_num: u32,
    macroblocks: u32,
}

impl Sps {
    fn parse(rbsp: &[u8]) -> Result<Sps, String> {
        let mut r = BitReader::new(rbsp);
        let profile = r.bits(8)?;
        r.bits(16)?; // constraint flags, level
        r.ue()?; // seq_parameter_set_id
        if matches!(
            profile,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            if r.ue()? == 3 {
                r.bits(1)?; // separate_colour_plane_flag
            }
            r.ue()?; // bit_depth_luma_minus8
            r.ue()?; // bit_depth_chroma_minus8
            r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
            if r.bits(1)? == 1 {
                return Err("the stream has scaling matrices".into());
            }
        }
        let log2_max_frame_num = r.ue()? + 4;
        let order = r.ue()?;
        if order != 2 {
            return Err(format!(
                "picture order type {order} (B-frames): a repeat would need an order count"
            ));
        }
        let refs = r.ue()?;
        if refs != 1 {
            return Err(format!(
                "{refs} reference pictures: a repeat would shift the older ones"
            ));
        }
        r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
        let width = r.ue()? + 1;
        let height = r.ue()? + 1;
        if r.bits(1)? != 1 {
            return Err("the stream has field pictures".into());
        }
        Ok(Sps {
            log2_max_frame_num,
            macroblocks: width * height,
        })
    }
}

/// What a repeat needs from the picture parameter set, which must allow it.
struct Pps {
    id: u32,
    deblocking_control: bool,
}

impl Pps {
    fn parse(rbsp: &[u8]) -> Result<Pps, String> {
        let mut r = BitReader::new(rbsp);
        let id = r.ue()?;
        r.ue()?; // seq_parameter_set_id
        if r.bits(1)? != 0 {
            return Err("CABAC entropy coding".into());
        }
        r.bits(1)?; // bottom_field_pic_order_in_frame_present_flag
        if r.ue()? != 0 {
            return Err("slice groups".into());
        }
        r.ue()?; // num_ref_idx_l0_default_active_minus1 (a repeat overrides it)
        r.ue()?; // num_ref_idx_l1_default_active_minus1
        if r.bits(1)? != 0 {
            return Err("weighted prediction".into());
        }
        r.bits(2)?; // weighted_bipred_idc
        r.se()?; // pic_init_qp_minus26
        r.se()?; // pic_init_qs_minus26
        r.se()?; // chroma_qp_index_offset
        let deblocking_control = r.bits(1)? == 1;
        r.bits(1)?; // constrained_intra_pred_flag
        if r.bits(1)? != 0 {
            return Err("redundant pictures".into());
        }
        Ok(Pps {
            id,
            deblocking_control,
        })
    }
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes).
fn annexb_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
            // The zero before a 4-byte start code belongs to the start code.
            while end > s && data[end - 1] == 0 && k + 1 < starts.len() {
                end -= 1;
            }
            &data[s..end]
        })
        .collect()
}

/// The NAL units of a packet whose units carry a big-endian length of `n` bytes.
fn length_units(data: &[u8], n: usize) -> Result<Vec<&[u8]>, String> {
    let mut units = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < n {
            return Err("a NAL unit length is cut short".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let unit = rest
            .get(n..n + len)
            .ok_or("a NAL unit is longer than its packet")?;
        units.push(unit);
        rest = &rest[n + len..];
    }
    Ok(units)
}

/// The SPS and PPS units of an avcC record.
fn avcc_units(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let short = || "short avcC".to_string();
    let mut units = Vec::new();
    let mut at = 5;
    for mask in [0x1f, 0xff] {
        let count = data.get(at).ok_or_else(short)? & mask;
        at += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([
                *data.get(at).ok_or_else(short)?,
                *data.get(at + 1).ok_or_else(short)?,
            ]));
            units.push(data.get(at + 2..at + 2 + len).ok_or_else(short)?);
            at += 2 + len;
        }
    }
    Ok(units)
}

/// The payload without its emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The payload with emulation-prevention bytes, so that no start code appears inside it.
fn escape(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Overwrites `width` bits at bit `at` of `data` with `value`.
fn set_bits(data: &mut [u8], at: usize, width: u32, value: u32) -> Result<(), String> {
    if at + width as usize > data.len() * 8 {
        return Err("a slice header is cut short".into());
    }
    for i in 0..width as usize {
        let bit = (value >> (width as usize - 1 - i)) & 1;
        let (byte, shift) = ((at + i) / 8, 7 - (at + i) % 8);
        data[byte] = (data[byte] & !(1 << shift)) | ((bit as u8) << shift);
    }
    Ok(())
}

struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, at: 0 }
    }

    fn position(&self) -> usize {
        self.at
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self
                .data
                .get(self.at / 8)
                .ok_or("a parameter set is cut short")?;
            v = (v << 1) | u32::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("an Exp-Golomb number is too long".into());
            }
        }
        Ok((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Result<i32, String> {
        let k = self.ue()?;
        Ok(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn bits(&mut self, value: u32, width: u32) {
        for i in (0..width).rev() {
            if self.bits.is_multiple_of(8) {
                self.out.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            *self.out.last_mut().expect("pushed") |= bit << (7 - self.bits % 8);
            self.bits += 1;
        }
    }

    fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let width = 64 - v.leading_zeros();
        self.bits(0, width - 1);
        // `v` has `width` bits, at most 33: written in two parts.
        if width > 32 {
            self.bits(1, 1);
            self.bits(v as u32, 32);
        } else {
            self.bits(v as u32, width);
        }
    }

    fn se(&mut self, value: i32) {
        let k = if value > 0 {
            (value as u32) * 2 - 1
        } else {
            value.unsigned_abs() * 2
        };
        self.ue(k);
    }

    /// `rbsp_trailing_bits`: a stop bit, then zeros to the byte.
    fn trailing(&mut self) {
        self.bits(1, 1);
        while !self.bits.is_multiple_of(8) {
            self.bits(0, 1);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_numbers_read_back_as_written() {
        let mut w = BitWriter::default();
        for v in [0, 1, 2, 5, 3600, 65_535] {
            w.ue(v);
        }
        for v in [0, 1, -1, 7, -26] {
            w.se(v);
        }
        w.bits(0b1011, 4);
        w.trailing();
        let data = w.finish();
        let mut r = BitReader::new(&data);
        for v in [0, 1, 2, 5, 3600, 65_535] {
            assert_eq!(r.ue().unwrap(), v);
        }
        for v in [0, 1, -1, 7, -26] {
            assert_eq!(r.se().unwrap(), v);
        }
        assert_eq!(r.bits(4).unwrap(), 0b1011);
        assert_eq!(r.bits(1).unwrap(), 1, "the stop bit");
    }

    #[test]
    fn emulation_prevention_is_undone_and_redone() {
        let rbsp = [0, 0, 1, 0, 0, 0, 5, 0, 0, 3, 7, 0, 0];
        let ebsp = escape(&rbsp);
        assert_eq!(ebsp, [0, 0, 3, 1, 0, 0, 3, 0, 5, 0, 0, 3, 3, 7, 0, 0]);
        assert_eq!(unescape(&ebsp), rbsp);
    }

    #[test]
    fn units_are_found_between_start_codes_and_lengths() {
        let annexb = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        assert_eq!(
            annexb_units(&annexb),
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
        let lengths = [0, 0, 0, 2, 0x41, 9, 0, 0, 0, 1, 0x06];
        assert_eq!(
            length_units(&lengths, 4).unwrap(),
            vec![&[0x41, 9][..], &[0x06][..]]
        );
        assert!(length_units(&[0, 0, 0, 9, 1], 4).is_err());
    }

    /// An Annex B header of a baseline SPS (`order`: picture order type, `refs` references) and
    /// a PPS (`cabac`).
    fn header(order: u32, refs: u32, cabac: bool) -> Vec<u8> {
        let mut sps = BitWriter::default();
        sps.bits(66, 8); // baseline: no chroma format fields
        sps.bits(0, 16);
        sps.ue(0); // id
        sps.ue(0); // log2_max_frame_num_minus4
        sps.ue(order);
        if order == 0 {
            sps.ue(2);
        }
        sps.ue(refs);
        sps.bits(0, 1);
        sps.ue(79);
        sps.ue(44);
        sps.bits(1, 1); // frame_mbs_only_flag
        sps.trailing();
        let mut pps = BitWriter::default();
        pps.ue(0);
        pps.ue(0);
        pps.bits(u32::from(cabac), 1);
        pps.bits(0, 1);
        pps.ue(0);
        pps.ue(0);
        pps.ue(0);
        pps.bits(0, 3);
        pps.se(0);
        pps.se(0);
        pps.se(0);
        pps.bits(0b100, 3); // deblocking control, no constrained intra, no redundant pictures
        pps.trailing();
        let mut out = vec![0, 0, 0, 1, 0x67];
        out.extend(escape(&sps.finish()));
        out.extend([0, 0, 0, 1, 0x68]);
        out.extend(escape(&pps.finish()));
        out
    }

    #[test]
    fn only_a_stream_a_repeat_keeps_valid_gets_repeats() {
        let r = Repeater::new(&header(2, 1, false)).unwrap();
        assert_eq!(r.macroblocks, 3600);
        assert_eq!(r.log2_max_frame_num, 4);
        assert!(r.deblocking_control);
        let why = |h: Vec<u8>| Repeater::new(&h).unwrap_err();
        assert!(why(header(0, 1, false)).contains("picture order"));
        assert!(why(header(2, 3, false)).contains("reference"));
        assert!(why(header(2, 1, true)).contains("CABAC"));
        assert!(Repeater::new(&[]).is_err());
    }

    #[test]
    fn repeats_take_the_next_frame_number_and_an_idr_starts_again() {
        let mut r = Repeater::new(&header(2, 1, false)).unwrap();
        let frame_num = |packet: &[u8]| {
            let unit = annexb_units(packet)[0];
            let rbsp = unescape(&unit[1..]);
            let mut b = BitReader::new(&rbsp);
            for _ in 0..3 {
                b.ue().unwrap();
            }
            b.bits(4).unwrap()
        };
        let first = r.repeat();
        assert_eq!(first[4], 0x41, "a reference, non-IDR slice");
        assert_eq!(frame_num(&first), 1);
        for want in 2..16 {
            assert_eq!(frame_num(&r.repeat()), want);
        }
        assert_eq!(frame_num(&r.repeat()), 0, "frame_num wraps at 16");
        // An encoded P picture after the repeats follows on, whatever number it carried.
        let mut slice = BitWriter::default();
        slice.ue(0);
        slice.ue(5);
        slice.ue(0);
        slice.bits(9, 4);
        slice.bits(0b1010, 4);
        slice.trailing();
        let mut packet = vec![0, 0, 0, 1, 0x41];
        packet.extend(escape(&slice.finish()));
        let renumbered = r.renumber(&packet).unwrap();
        assert_eq!(frame_num(&renumbered), 1);
        let rbsp = unescape(&annexb_units(&renumbered)[0][1..]);
        let mut b = BitReader::new(&rbsp);
        for _ in 0..3 {
            b.ue().unwrap();
        }
        b.bits(4).unwrap();
        assert_eq!(b.bits(4).unwrap(), 0b1010, "the rest of the header is kept");
        // An IDR restarts the count; a non-reference picture is refused.
        r.renumber(&[0, 0, 0, 1, 0x65, 0x88]).unwrap();
        assert_eq!(frame_num(&r.repeat()), 1);
        assert!(r.renumber(&[0, 0, 0, 1, 0x01, 0x88]).is_err());
    }

    #[test]
    fn a_field_is_overwritten_in_place() {
        let mut data = [0b1010_1010, 0b1111_0000];
        set_bits(&mut data, 6, 4, 0b0101).unwrap();
        assert_eq!(data, [0b1010_1001, 0b0111_0000]);
        assert!(set_bits(&mut data, 14, 4, 0).is_err());
    }
}
