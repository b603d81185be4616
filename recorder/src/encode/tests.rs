//! The live encoder on real libav: what it writes decodes to the frames it was given.

use super::*;

/// A BGR0 picture of one colour.
fn picture(width: u32, height: u32, bgr: [u8; 3]) -> Vec<u8> {
    (0..width * height)
        .flat_map(|_| [bgr[0], bgr[1], bgr[2], 0])
        .collect()
}

/// Every decoded frame of `path`: (frame number at 30 fps, whether a keyframe, mean Y, the
/// packet's size).
fn decoded(path: &Path) -> Vec<(i64, bool, f64, usize)> {
    let mut input = format::input(path).unwrap();
    let stream = input.streams().best(media::Type::Video).unwrap();
    let index = stream.index();
    let tb = stream.time_base();
    let slot = move |pts: i64| (pts as f64 * f64::from(tb) * 30.0).round() as i64;
    // Strict: a stream error fails the decoding instead of being concealed.
    let mut strict = Dictionary::new();
    strict.set("err_detect", "crccheck+bitstream+buffer+explode");
    let codec = ffmpeg::decoder::find(stream.parameters().id()).unwrap();
    let mut decoder = codec::context::Context::from_parameters(stream.parameters())
        .unwrap()
        .decoder()
        .open_as_with(codec, strict)
        .unwrap()
        .video()
        .unwrap();
    let mut sizes = std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut frame = frame::Video::empty();
    let mut take = |decoder: &mut ffmpeg::decoder::Video,
                    sizes: &std::collections::HashMap<i64, usize>,
                    out: &mut Vec<_>| {
        while decoder.receive_frame(&mut frame).is_ok() {
            let (w, h) = (frame.width() as usize, frame.height() as usize);
            let stride = frame.stride(0);
            let y = frame.data(0);
            let sum: u64 = (0..h)
                .flat_map(|r| y[r * stride..r * stride + w].iter().map(|&v| u64::from(v)))
                .sum();
            let pts = frame.pts().unwrap_or(-1);
            out.push((
                slot(pts),
                frame.is_key(),
                sum as f64 / (w * h) as f64,
                sizes.get(&pts).copied().unwrap_or(0),
            ));
        }
    };
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        sizes.insert(packet.pts().unwrap_or(-1), packet.size());
        decoder
            .send_packet(&packet)
            .expect("a packet the decoder takes");
        take(&mut decoder, &sizes, &mut out);
    }
    decoder.send_eof().unwrap();
    take(&mut decoder, &sizes, &mut out);
    out
}

/// Unchanged frames are written as repeats: the file decodes to every frame, each the picture
/// it repeats, with keyframes still every 10 s of output, and a repeat costs a few bytes.
#[test]
fn repeats_decode_to_the_picture_they_repeat_and_keyframes_keep_their_interval() {
    init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("video.mkv");
    let (w, h) = (320, 240);
    let settings = VideoSettings {
        width: w,
        height: h,
        fps: 30,
        container: Container::Mp4,
        crf: None,
        preset: None,
    };
    let mut writer = VideoWriter::create(&path, &settings).unwrap();
    assert!(writer.repeater.is_some(), "x264 is set up for repeats");
    let dark = picture(w, h, [40, 40, 40]);
    let light = picture(w, h, [220, 220, 220]);
    // 0-9 dark (one encoded, 9 repeats), 10-19 changing every frame, 20-719 light and still
    // (crossing two keyframe intervals), 720 dark again.
    let mut expected = Vec::new();
    for slot in 0..721u32 {
        let (pic, unchanged, dark_one) = match slot {
            0 => (&dark, false, true),
            1..=9 => (&dark, true, true),
            10..=19 => {
                let d = slot % 2 == 0;
                (if d { &dark } else { &light }, false, d)
            }
            720 => (&dark, false, true),
            _ => (&light, slot != 20, false),
        };
        writer.write(pic, w as usize * 4, unchanged).unwrap();
        expected.push(dark_one);
    }
    let (_, frames) = writer.finish().unwrap();
    assert_eq!(frames, 721);

    let got = decoded(&path);
    assert_eq!(got.len(), 721, "every frame decodes");
    for (slot, ((pts, _, y, _), dark_one)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(*pts, slot as i64);
        // Limited-range luma of a grey: 16 + 219 * v / 255.
        let grey = if *dark_one { 40.0 } else { 220.0 };
        let want = 16.0 + 219.0 * grey / 255.0;
        assert!(
            (y - want).abs() < 4.0,
            "frame {slot}: mean luma {y}, want about {want}"
        );
    }
    let keys: Vec<i64> = got.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert_eq!(
        keys,
        vec![0, 300, 600],
        "a keyframe every 10 s, repeats or not"
    );
    let repeat_sizes: Vec<usize> = got[21..300].iter().map(|f| f.3).collect();
    assert!(
        repeat_sizes.iter().all(|&s| s > 0 && s < 32),
        "repeats are a few bytes: {repeat_sizes:?}"
    );
}

/// The colour conversion gives what libswscale gave (BT.601, limited range) on the samples'
/// colours, with a stride wider than the rows: luma within 2 of 255 everywhere (stripes one
/// pixel wide included), chroma within 2 inside each colour block. (At a colour edge the two
/// average a 4:2:0 chroma sample over different neighbours, both fair.)
#[test]
fn the_colour_conversion_is_libswscales() {
    ffmpeg::init().unwrap();
    let (width, height) = (64u32, 48u32);
    let stride = width as usize * 4 + 32;
    let colours: [[u8; 3]; 6] = [
        [20, 20, 220],
        [20, 180, 20],
        [220, 20, 20],
        [20, 200, 230],
        [255, 0, 255],
        [255, 255, 255],
    ];
    let mut bgr0 = vec![0u8; stride * height as usize];
    for y in 0..height as usize {
        for x in 0..width as usize {
            // Blocks of 16x16, each its own colour (BGR order), crossed by one-pixel stripes.
            let stripe = x % 16 == 15 || y % 16 == 15;
            let c = colours[(x / 16 + y / 16 + stripe as usize) % colours.len()];
            bgr0[y * stride + x * 4..y * stride + x * 4 + 4]
                .copy_from_slice(&[c[0], c[1], c[2], 0]);
        }
    }
    let mut ours = frame::Video::new(format::Pixel::YUV420P, width, height);
    to_yuv420(&bgr0, stride, &mut ours).unwrap();

    let mut source = frame::Video::new(format::Pixel::BGRZ, width, height);
    let row = width as usize * 4;
    let dst_stride = source.stride(0);
    for y in 0..height as usize {
        source.data_mut(0)[y * dst_stride..y * dst_stride + row]
            .copy_from_slice(&bgr0[y * stride..y * stride + row]);
    }
    let mut theirs = frame::Video::new(format::Pixel::YUV420P, width, height);
    ffmpeg::software::scaling::Context::get(
        format::Pixel::BGRZ,
        width,
        height,
        format::Pixel::YUV420P,
        width,
        height,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )
    .unwrap()
    .run(&source, &mut theirs)
    .unwrap();

    for plane in 0..3 {
        let (w, h) = if plane == 0 {
            (width as usize, height as usize)
        } else {
            (width as usize / 2, height as usize / 2)
        };
        let mut worst = 0u8;
        // Chroma samples cover 2x2 pixels: inside a block means pixels 4-11 of its 16.
        let inside = |i: usize| plane == 0 || (4..12).contains(&(i * 2 % 16));
        for y in (0..h).filter(|y| inside(*y)) {
            for x in (0..w).filter(|x| inside(*x)) {
                let a = ours.data(plane)[y * ours.stride(plane) + x];
                let b = theirs.data(plane)[y * theirs.stride(plane) + x];
                worst = worst.max(a.abs_diff(b));
            }
        }
        assert!(worst <= 2, "plane {plane}: off by up to {worst}");
    }
}
