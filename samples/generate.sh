#!/usr/bin/env bash
# samples/generate.sh: owns every file under samples/recordings/. It writes the sample BigBlueButton
# recordings in the real published layout (docs: bbb-playback.md "On-disk / served layout"): media with
# the ffmpeg CLI, XML data files from the here-documents below. samples/README.md documents the
# timelines; change both together.
#
# Usage:
#   samples/generate.sh                        regenerate the committed samples (a), (b), (c), (f), (g)
#   samples/generate.sh long   OUTDIR [MIN]    (d) long presentation, slide change every 4 s (default 10 min;
#                                              MIN may also be seconds, e.g. 20s, for short timing tests)
#   samples/generate.sh static OUTDIR [MIN]    (e) one static slide, nothing moving (default 10 min)
#   samples/generate.sh check                  generate the committed samples twice in temporary
#                                              directories and compare every file's sha256 (and
#                                              with samples/recordings: see same_media for Opus)
# "long" and "static" write OUTDIR/presentation/<recordId>/... (the same layout as
# samples/recordings/presentation/); they are never committed.
#
# Determinism: every encoder runs single-threaded with the bitexact flags and synthetic sources
# (lavfi), so the same ffmpeg/libvpx/libopus/x264 build gives the same bytes. Nothing random, no
# wall-clock time anywhere.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
# Host written into metadata.xml links, as a real server writes its own name. The test server
# rewrites or ignores it.
HOST=https://bbb.example.org

# Output options for every encode: no encoder/muxer version strings, no creation time, one thread
# (multi-threaded libvpx/x264 can pick different decisions run to run).
BITEXACT=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -threads 1)

ff() { ffmpeg -hide_banner -loglevel error -nostdin -y -filter_threads 1 "$@"; }

die() { echo "generate.sh: $*" >&2; exit 1; }

for tool in ffmpeg ffprobe sha1sum sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ -r "$FONT" ] || die "font $FONT missing (Debian package fonts-dejavu-core)"

# sha1 of a string: BBB's internal meeting id is sha1(external meeting id).
sha1() { printf %s "$1" | sha1sum | cut -c1-40; }

# Container duration in integer milliseconds, the value metadata.xml <duration> must carry
# (the player's video.duration comes from the same container field).
duration_ms() {
  ffprobe -v error -show_entries format=duration -of csv=p=0 "$1" |
    awk '{ printf "%d\n", $1 * 1000 + 0.5 }'
}

# Sum of file sizes in a directory (bytes), like BBB's <size> for the published format.
dir_size() { find "$1" -type f ! -name metadata.xml -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# --- slides ---------------------------------------------------------------------------------------
# slide_png OUT COLOUR NUMBER: a 1600x1200 slide (the size BBB's presentation conversion produces for
# 4:3 pages), solid COLOUR, a white square marker at x 200-400, y 150-300 (so a zoom into the top-left
# quadrant is visible in pixels), and NUMBER in big white digits in the centre.
slide_png() {
  ff -f lavfi -i "color=c=$2:s=1600x1200:d=1,format=rgb24,drawbox=x=200:y=150:w=200:h=150:c=white:t=fill,drawtext=fontfile=$FONT:text=$3:fontsize=600:fontcolor=white:x=(w-tw)/2:y=(h-th)/2" \
    -frames:v 1 "${BITEXACT[@]}" -pix_fmt rgb24 -f image2 -update 1 "$1"
}

# thumb_png IN OUT: the 176x132 thumbnail BBB publishes next to each slide.
thumb_png() {
  ff -i "$1" -vf scale=176:132:flags=bilinear -frames:v 1 "${BITEXACT[@]}" -pix_fmt rgb24 -f image2 -update 1 "$2"
}

# make_slides DIR PRESID COLOUR...: slide-N.png and thumbnails/thumb-N.png for each colour.
make_slides() {
  local dir=$1/presentation/$2 n=1 colour
  shift 2
  mkdir -p "$dir/thumbnails"
  for colour in "$@"; do
    slide_png "$dir/slide-$n.png" "$colour" "$n"
    thumb_png "$dir/slide-$n.png" "$dir/thumbnails/thumb-$n.png"
    n=$((n + 1))
  done
}

# --- media ----------------------------------------------------------------------------------------
# webcams_webm OUT SECONDS PICTURE AUDIOFILTER: VP8 + Opus WebM like BBB's video/webcams.webm.
# PICTURE is a lavfi video source without size/rate/duration; the picture is 320x240 at 15 fps.
# Keyframes every 10 s (-g 150), in the 8-13 s range of real webcams files, so seeks cost what they
# cost on real recordings. Opus at 48 kHz mono, as BBB encodes the meeting audio.
webcams_webm() {
  local out=$1 secs=$2 pic=$3 aud=$4 sep='='
  [[ $pic == *=* ]] && sep=':'
  ff -f lavfi -i "$pic${sep}s=320x240:r=15:d=$secs" -f lavfi -i "$aud" \
    -map 0:v -map 1:a -t "$secs" \
    -c:v libvpx -b:v 120k -crf 30 -g 150 -deadline good -cpu-used 4 -auto-alt-ref 0 -pix_fmt yuv420p \
    -c:a libopus -b:a 32k -ac 1 -ar 48000 \
    "${BITEXACT[@]}" -f webm "$out"
}

# --- XML writers ----------------------------------------------------------------------------------
# metadata_xml OUT FORMAT ID EXTID NAME START DURATION_MS SIZE LINK PREVIEW_XML
# The element set and order follow metadata.xml files written by BBB 2.x (id, state, published,
# start_time, end_time, participants, meeting, meta, playback, raw_size). end_time is start_time plus
# the duration plus 60 s: real meetings include time the recording was paused, which is why
# <duration> (not end - start) is the media length.
metadata_xml() {
  local out=$1 format=$2 id=$3 extid=$4 name=$5 start=$6 dur=$7 size=$8 link=$9 preview=${10}
  local end=$((start + dur + 60000))
  cat >"$out" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<recording>
  <id>$id</id>
  <state>published</state>
  <published>true</published>
  <start_time>$start</start_time>
  <end_time>$end</end_time>
  <participants>3</participants>
  <meeting id="$id" externalId="$extid" name="$name" breakout="false"/>
  <meta>
    <isBreakout>false</isBreakout>
    <meetingId>$extid</meetingId>
    <meetingName>$name</meetingName>
    <bbb-origin>Moodle</bbb-origin>
    <bbb-origin-server-name>moodle.example.org</bbb-origin-server-name>
    <bbb-origin-version>4.1.2 (Build: 20230313)</bbb-origin-version>
    <bbb-origin-tag>moodle-mod_bigbluebuttonbn (2022112800)</bbb-origin-tag>
    <bbb-context>Sample course</bbb-context>
    <bbb-context-id>42</bbb-context-id>
    <bbb-context-label>SAMPLE-101</bbb-context-label>
    <bbb-context-name>Sample course</bbb-context-name>
    <bbb-recording-name>$name</bbb-recording-name>
    <bbb-recording-description>Sample recording generated by samples/generate.sh</bbb-recording-description>
    <bbb-recording-tags></bbb-recording-tags>
  </meta>
  <playback>
    <format>$format</format>
    <link>$link</link>
    <processing_time>12345</processing_time>
    <duration>$dur</duration>
$preview    <size>$size</size>
  </playback>
  <raw_size>$((size * 3))</raw_size>
</recording>
EOF
}

# preview_xml ID PRESID N ALT...: <extensions><preview> with the first N thumbnails, as BBB lists them.
preview_xml() {
  local id=$1 presid=$2 n=$3 i
  shift 3
  printf '    <extensions>\n      <preview>\n        <images>\n'
  for ((i = 1; i <= n; i++)); do
    printf '          <image width="176" height="132" alt="%s">%s/presentation/%s/presentation/%s/thumbnails/thumb-%d.png</image>\n' \
      "$1" "$HOST" "$id" "$presid" "$i"
    shift
  done
  printf '        </images>\n      </preview>\n    </extensions>\n'
}

# The shapes.svg header and the logo placeholder image0. BBB writes image0 with a plain `src`
# attribute (not xlink:href) covering the time before the first slide; players skip it.
# A canvas group exists only for a slide with annotations: the real 2.3 player fails (error 400)
# on an empty `<g class="canvas"/>`.
shapes_head() {
  cat <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" id="svgfile" style="position:absolute;height:600px;width:800px" version="1.1" viewBox="0 0 800 600">
  <image id="image0" class="slide" in="0.0" out="0.0" src="logo.png" width="800"/>
EOF
}

# slide_image N IN OUT PRESID: one slide <image>; IN/OUT may list several times (a slide shown twice).
slide_image() {
  printf '  <image id="image%d" class="slide" in="%s" out="%s" xlink:href="presentation/%s/slide-%d.png" width="1600" height="1200" x="0" y="0" style="visibility:hidden"/>\n' \
    "$1" "$2" "$3" "$4" "$1"
}

# =================================================================================================
# (a) presentation, 15 s: see README.md "Sample A".
gen_a() {
  local root=$1
  local extid=bbb-sample-presentation start=1767261600000
  local id presid dir dur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 slides-a)-$((start + 2000))
  dir=$root/presentation/$id
  rm -rf "$dir"
  mkdir -p "$dir/video" "$dir/deskshare"
  make_slides "$dir" "$presid" '#dc1414' '#14b414' '#1414dc'

  # Webcam: ffmpeg's testsrc pattern (with its frame counter) and a constant 440 Hz tone.
  webcams_webm "$dir/video/webcams.webm" 15 testsrc "sine=frequency=440:sample_rate=48000:duration=15"

  # Screen share: the full recording length like BBB's processed deskshare.webm, black outside the
  # shared interval, solid magenta from 6.0 s to 8.0 s. 640x360 at 5 fps, no audio.
  ff -f lavfi -i "color=c=black:s=640x360:r=5:d=15,drawbox=x=0:y=0:w=iw:h=ih:c=#ff00ff:t=fill:enable='between(t,6,8)'" \
    -t 15 -c:v libvpx -b:v 60k -crf 30 -g 50 -deadline good -cpu-used 4 -auto-alt-ref 0 -pix_fmt yuv420p \
    "${BITEXACT[@]}" -f webm "$dir/deskshare/deskshare.webm"

  dur=$(duration_ms "$dir/video/webcams.webm")

  {
    shapes_head
    slide_image 1 0.0 5.0 "$presid"
    # Rectangle on slide 1: a draft at 2.0 s then the final shape at 2.3 s (BBB writes each
    # DRAW_UPDATE as its own group with the same shape id; players show only the latest one).
    cat <<'EOF'
  <g class="canvas" id="canvas1" image="image1" display="none">
    <g id="draw0" class="shape" timestamp="2.0" undo="-1" shape="rect1" style="stroke:#000000;stroke-width:16.0;visibility:hidden;fill:none">
      <polygon points="900.0,700.0 1150.0,700.0 1150.0,850.0 900.0,850.0"/>
    </g>
    <g id="draw1" class="shape" timestamp="2.3" undo="-1" shape="rect1" style="stroke:#000000;stroke-width:16.0;visibility:hidden;fill:none">
      <polygon points="900.0,700.0 1400.0,700.0 1400.0,1000.0 900.0,1000.0"/>
    </g>
  </g>
EOF
    slide_image 2 5.0 10.0 "$presid"
    slide_image 3 10.0 15.0 "$presid"
    # Pen stroke on slide 3 growing at 11.0, 11.2, 11.4 s, undone at 13.0 s.
    cat <<'EOF'
  <g class="canvas" id="canvas3" image="image3" display="none">
    <g id="draw2" class="shape" timestamp="11.0" undo="13.0" shape="line2" style="stroke:#ffff00;stroke-linecap:round;stroke-linejoin:round;stroke-width:24.0;visibility:hidden;fill:none">
      <path d="M 200.0 900.0 L 500.0 1000.0"/>
    </g>
    <g id="draw3" class="shape" timestamp="11.2" undo="13.0" shape="line2" style="stroke:#ffff00;stroke-linecap:round;stroke-linejoin:round;stroke-width:24.0;visibility:hidden;fill:none">
      <path d="M 200.0 900.0 L 500.0 1000.0 L 800.0 900.0"/>
    </g>
    <g id="draw4" class="shape" timestamp="11.4" undo="13.0" shape="line2" style="stroke:#ffff00;stroke-linecap:round;stroke-linejoin:round;stroke-width:24.0;visibility:hidden;fill:none">
      <path d="M 200.0 900.0 L 500.0 1000.0 L 800.0 900.0 L 1100.0 1000.0 L 1400.0 900.0"/>
    </g>
  </g>
</svg>
EOF
  } >"$dir/shapes.svg"

  # viewBox in slide pixels: full slide, zoom into the top-left quadrant at 3.0 s, back at 4.5 s.
  cat >"$dir/panzooms.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events">
  <event timestamp="0.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="3.0">
    <viewBox>0.0 0.0 800.0 600.0</viewBox>
  </event>
  <event timestamp="4.5">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="5.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="10.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
</recording>
EOF

  # Cursor positions are fractions of the current viewBox; -1 -1 hides the cursor.
  cat >"$dir/cursor.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events">
  <event timestamp="0.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
  <event timestamp="1.0">
    <cursor>0.25 0.25</cursor>
  </event>
  <event timestamp="2.0">
    <cursor>0.5 0.5</cursor>
  </event>
  <event timestamp="4.0">
    <cursor>0.75 0.75</cursor>
  </event>
  <event timestamp="9.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
  <event timestamp="12.0">
    <cursor>0.5 0.25</cursor>
  </event>
  <event timestamp="14.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
</recording>
EOF

  cat >"$dir/deskshare.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events">
  <event start_timestamp="6.0" stop_timestamp="8.0" video_width="640" video_height="360"/>
</recording>
EOF

  cat >"$dir/slides_new.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<popcorn>
  <chattimeline in="1" direction="down" name="Alice Teacher" message="Welcome to the sample lecture" target="chat" senderId="w_alice" senderRole="MODERATOR" chatEmphasizedText="true"/>
  <chattimeline in="4" direction="down" name="Bob Student" message="Can you zoom in please?" target="chat" senderId="w_bob" senderRole="VIEWER" chatEmphasizedText="false"/>
  <chattimeline in="9" direction="down" name="Carol Student" message="Thanks for sharing the screen &amp; the slides" target="chat" senderId="w_carol" senderRole="VIEWER" chatEmphasizedText="false"/>
  <chattimeline in="12" direction="down" name="Alice Teacher" message="See &lt;a href=&quot;https://example.org/notes&quot; rel=&quot;nofollow&quot;&gt;&lt;u&gt;https://example.org/notes&lt;/u&gt;&lt;/a&gt;" target="chat" senderId="w_alice" senderRole="MODERATOR" chatEmphasizedText="true"/>
</popcorn>
EOF

  # A shared external video (BBB writes whole seconds): its link shows in the chat from 7 s.
  cat >"$dir/external_videos.json" <<'EOF'
[{"timestamp":7,"external_video_url":"https://video.example.org/watch/lecture-intro"}]
EOF

  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "Sample presentation" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 3 'Slide 1' 'Slide 2' 'Slide 3')"$'\n'
}

# =================================================================================================
# (b) audio-only presentation, 8 s: see README.md "Sample B". No video/ and no deskshare: old
# audio-only recordings have audio/audio.webm instead of video/webcams.webm.
gen_b() {
  local root=$1
  local extid=bbb-sample-audio-only start=1767265200000
  local id presid dir dur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 slides-b)-$((start + 2000))
  dir=$root/presentation/$id
  rm -rf "$dir"
  mkdir -p "$dir/audio"
  make_slides "$dir" "$presid" '#e6c814' '#14c8c8'

  ff -f lavfi -i "sine=frequency=660:sample_rate=48000:duration=8" -t 8 \
    -c:a libopus -b:a 32k -ac 1 -ar 48000 "${BITEXACT[@]}" -f webm "$dir/audio/audio.webm"
  dur=$(duration_ms "$dir/audio/audio.webm")

  {
    shapes_head
    slide_image 1 0.0 4.0 "$presid"
    slide_image 2 4.0 8.0 "$presid"
    printf '</svg>\n'
  } >"$dir/shapes.svg"

  cat >"$dir/panzooms.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events">
  <event timestamp="0.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="4.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
</recording>
EOF

  cat >"$dir/cursor.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events">
  <event timestamp="0.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
  <event timestamp="2.0">
    <cursor>0.5 0.5</cursor>
  </event>
  <event timestamp="6.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
</recording>
EOF

  cat >"$dir/slides_new.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<popcorn>
  <chattimeline in="3" direction="down" name="Dave Teacher" message="Audio only today" target="chat" senderId="w_dave" senderRole="MODERATOR" chatEmphasizedText="true"/>
</popcorn>
EOF

  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "Sample audio-only" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 2 'Slide 1' 'Slide 2')"$'\n'
}

# =================================================================================================
# (c) presentation AND video formats, 8 s: see README.md "Sample C".
gen_c() {
  local root=$1
  local extid=bbb-sample-two-formats start=1767268800000
  local id presid dir vdir dur vdur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 slides-c)-$((start + 2000))
  dir=$root/presentation/$id
  vdir=$root/video/$id
  rm -rf "$dir" "$vdir"
  mkdir -p "$dir/video" "$vdir"
  make_slides "$dir" "$presid" '#f07800' '#7828c8'

  webcams_webm "$dir/video/webcams.webm" 8 smptebars "sine=frequency=880:sample_rate=48000:duration=8"
  dur=$(duration_ms "$dir/video/webcams.webm")

  # The video format: one H.264 + AAC MP4 (BBB names it video-0.m4v), 640x360 at 15 fps, orange
  # 0-4 s and purple 4-8 s like the slides, with an 880 Hz tone. faststart so it streams.
  ff -f lavfi -i "color=c=#f07800:s=640x360:r=15:d=8,drawbox=x=0:y=0:w=iw:h=ih:c=#7828c8:t=fill:enable='gte(t,4)',drawtext=fontfile=$FONT:text=VIDEO:fontsize=96:fontcolor=white:x=(w-tw)/2:y=(h-th)/2" \
    -f lavfi -i "sine=frequency=880:sample_rate=48000:duration=8" -map 0:v -map 1:a -t 8 \
    -c:v libx264 -preset veryfast -crf 30 -g 60 -pix_fmt yuv420p -c:a aac -b:a 64k -ac 1 \
    "${BITEXACT[@]}" -movflags +faststart -f mp4 "$vdir/video-0.m4v"
  vdur=$(duration_ms "$vdir/video-0.m4v")

  # BBB's video format page: a plain HTML5 page whose <source> names the file relative to it.
  cat >"$vdir/index.html" <<EOF
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sample two formats</title>
</head>
<body>
<video controls preload="metadata" style="width:100%;max-height:100vh">
<source src="video-0.m4v" type="video/mp4">
</video>
</body>
</html>
EOF

  {
    shapes_head
    slide_image 1 0.0 4.0 "$presid"
    slide_image 2 4.0 8.0 "$presid"
    printf '</svg>\n'
  } >"$dir/shapes.svg"

  cat >"$dir/panzooms.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events">
  <event timestamp="0.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="4.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
</recording>
EOF

  cat >"$dir/cursor.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events">
  <event timestamp="0.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
</recording>
EOF

  # A recording without screen share still has a deskshare.xml, with no events.
  cat >"$dir/deskshare.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events"/>
EOF

  cat >"$dir/slides_new.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<popcorn/>
EOF

  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "Sample two formats" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 2 'Slide 1' 'Slide 2')"$'\n'
  metadata_xml "$vdir/metadata.xml" video "$id" "$extid" "Sample two formats" "$start" "$vdur" \
    "$(dir_size "$vdir")" "$HOST/playback/video/$id/" ""
}

# =================================================================================================
# (d) long presentation: MIN minutes, 6 slides shown in turn, a slide change every 4 s; the audio is
# silent except a 1 kHz beep of 100 ms starting at each slide change, so a capture can measure
# picture/sound offset at every change. See README.md "Sample D".
gen_long() {
  local root=$1 min=$2
  local secs
  if [[ $min == *s ]]; then secs=${min%s}; else secs=$((min * 60)); fi
  local extid=bbb-sample-long-$min start=1767272400000
  local id presid dir dur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 "slides-long-$min")-$((start + 2000))
  dir=$root/presentation/$id
  rm -rf "$dir"
  mkdir -p "$dir/video"
  make_slides "$dir" "$presid" '#dc1414' '#14b414' '#1414dc' '#e6c814' '#14c8c8' '#c814c8'

  webcams_webm "$dir/video/webcams.webm" "$secs" testsrc \
    "aevalsrc='if(lt(mod(t\,4)\,0.1)\,0.5*sin(2*PI*1000*t)\,0)':s=48000:d=$secs"
  dur=$(duration_ms "$dir/video/webcams.webm")

  # Slide k (1..6) is shown at 4*(k-1) + 24*j seconds: one <image> per slide with every in/out time.
  {
    shapes_head
    local k t ins outs
    for k in 1 2 3 4 5 6; do
      ins='' outs=''
      for ((t = 4 * (k - 1); t < secs; t += 24)); do
        ins+="$t.0 " outs+="$((t + 4 > secs ? secs : t + 4)).0 "
      done
      [ -n "$ins" ] || continue
      slide_image "$k" "${ins% }" "${outs% }" "$presid"
      done
    printf '</svg>\n'
  } >"$dir/shapes.svg"

  {
    printf '<?xml version="1.0" encoding="UTF-8"?>\n<recording id="panzoom_events">\n'
    for ((t = 0; t < secs; t += 4)); do
      printf '  <event timestamp="%d.0">\n    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>\n  </event>\n' "$t"
    done
    printf '</recording>\n'
  } >"$dir/panzooms.xml"

  # The cursor sits at a different corner on each slide (moves at every change).
  {
    printf '<?xml version="1.0" encoding="UTF-8"?>\n<recording id="cursor_events">\n'
    local pos=('0.25 0.25' '0.75 0.25' '0.75 0.75' '0.25 0.75')
    for ((t = 0; t < secs; t += 4)); do
      printf '  <event timestamp="%d.0">\n    <cursor>%s</cursor>\n  </event>\n' "$t" "${pos[$(((t / 4) % 4))]}"
    done
    printf '</recording>\n'
  } >"$dir/cursor.xml"

  cat >"$dir/deskshare.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events"/>
EOF

  # One chat message a minute.
  {
    printf '<?xml version="1.0" encoding="UTF-8"?>\n<popcorn>\n'
    for ((t = 30; t < secs; t += 60)); do
      printf '  <chattimeline in="%d" direction="down" name="Alice Teacher" message="Minute %d" target="chat" senderId="w_alice" senderRole="MODERATOR" chatEmphasizedText="false"/>\n' \
        "$t" "$((t / 60 + 1))"
    done
    printf '</popcorn>\n'
  } >"$dir/slides_new.xml"

  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "Sample long $min min" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 3 'Slide 1' 'Slide 2' 'Slide 3')"$'\n'
  echo "$dir"
}

# =================================================================================================
# (e) static presentation: MIN minutes of one slide, no cursor, no zoom, no chat, no screen share;
# the webcam picture is a constant dark grey frame and the audio a constant 440 Hz tone. For CPU
# benchmarks: nothing on the page changes except the control bar's clock. See README.md "Sample E".
gen_static() {
  local root=$1 min=$2
  local secs=$((min * 60))
  local extid=bbb-sample-static-$min start=1767276000000
  local id presid dir dur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 "slides-static-$min")-$((start + 2000))
  dir=$root/presentation/$id
  rm -rf "$dir"
  mkdir -p "$dir/video"
  make_slides "$dir" "$presid" '#1414dc'

  webcams_webm "$dir/video/webcams.webm" "$secs" "color=c=#202020" \
    "sine=frequency=440:sample_rate=48000:duration=$secs"
  dur=$(duration_ms "$dir/video/webcams.webm")

  {
    shapes_head
    slide_image 1 0.0 "$secs.0" "$presid"
    printf '</svg>\n'
  } >"$dir/shapes.svg"
  cat >"$dir/panzooms.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events">
  <event timestamp="0.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
</recording>
EOF
  cat >"$dir/cursor.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events">
  <event timestamp="0.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
</recording>
EOF
  cat >"$dir/deskshare.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events"/>
EOF
  cat >"$dir/slides_new.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<popcorn/>
EOF
  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "Sample static $min min" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 1 'Slide 1')"$'\n'
  echo "$dir"
}

# =================================================================================================
# BBB 2.6+ whiteboard recordings (tldraw): slides are SVG files (presentation/<presId>/svgs/slideN.svg)
# named by shapes.svg without canvas groups, the annotations are in tldraw.json, and the roots of
# panzooms.xml and cursor.xml carry tldraw="true" (docs bbb-playback.md "BBB 2.6+ / 3.0 recordings").
# Shape coordinates are in the 1440x1080 box the 1600x1200 slides are scaled into (scale 0.9).

# svg_slides DIR PRESID COLOUR...: svgs/slideN.svg (solid COLOUR, the white marker at 200-400 x
# 150-300, the number) and the thumbnails/thumb-N.png and textfiles/slide-N.txt BBB publishes beside.
svg_slides() {
  local dir=$1/presentation/$2 n=1 colour
  shift 2
  mkdir -p "$dir/svgs" "$dir/thumbnails" "$dir/textfiles"
  for colour in "$@"; do
    cat >"$dir/svgs/slide$n.svg" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="1200" viewBox="0 0 1600 1200">
  <rect x="0" y="0" width="1600" height="1200" fill="$colour"/>
  <rect x="200" y="150" width="200" height="150" fill="#ffffff"/>
  <text x="800" y="820" font-family="DejaVu Sans" font-weight="bold" font-size="600" fill="#ffffff" text-anchor="middle">$n</text>
</svg>
EOF
    ff -f lavfi -i "color=c=$colour:s=176x132:d=1,format=rgb24,drawbox=x=22:y=16:w=22:h=17:c=white:t=fill" \
      -frames:v 1 "${BITEXACT[@]}" -pix_fmt rgb24 -f image2 -update 1 "$dir/thumbnails/thumb-$n.png"
    printf 'Slide %d\n' "$n" >"$dir/textfiles/slide-$n.txt"
    n=$((n + 1))
  done
}

# svg_slide_image N IN OUT PRESID: one SVG slide <image> as BBB 2.6+ writes it in shapes.svg.
svg_slide_image() {
  printf '  <image id="image%d" class="slide" in="%s" out="%s" xlink:href="presentation/%s/svgs/slide%d.svg" width="1600" height="1200" x="0" y="0" text="presentation/%s/textfiles/slide-%d.txt" style="visibility:hidden"/>\n' \
    "$1" "$2" "$3" "$4" "$1" "$4" "$1"
}

# whiteboard_common DIR PRESID: shapes.svg (two slides, 0-4 s and 4-8 s), panzooms.xml and
# cursor.xml with tldraw="true", an empty deskshare.xml and one chat message.
whiteboard_common() {
  local dir=$1 presid=$2
  {
    shapes_head
    svg_slide_image 1 0.0 4.0 "$presid"
    svg_slide_image 2 4.0 8.0 "$presid"
    printf '</svg>\n'
  } >"$dir/shapes.svg"
  cat >"$dir/panzooms.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events" tldraw="true">
  <event timestamp="0.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
  <event timestamp="4.0">
    <viewBox>0.0 0.0 1600.0 1200.0</viewBox>
  </event>
</recording>
EOF
  cat >"$dir/cursor.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events" tldraw="true">
  <event timestamp="0.0">
    <cursor>-1.0 -1.0</cursor>
  </event>
</recording>
EOF
  cat >"$dir/deskshare.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events"/>
EOF
  cat >"$dir/slides_new.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<popcorn>
  <chattimeline in="6" direction="down" name="Erin Teacher" message="Whiteboard done" target="chat" senderId="w_erin" senderRole="MODERATOR" chatEmphasizedText="false"/>
</popcorn>
EOF
}

# gen_whiteboard ROOT EXTID START SLIDES-SEED NAME COLOUR1 COLOUR2 HZ TLDRAW-JSON [POLLS-JSON]: one
# whiteboard sample (README.md "Samples F and G"): two SVG slides, a grey webcam with a HZ tone,
# 8 s, TLDRAW-JSON as its tldraw.json and POLLS-JSON, if given, as its polls.json. Prints the
# recording's directory.
gen_whiteboard() {
  local root=$1 extid=$2 start=$3 seed=$4 name=$5 c1=$6 c2=$7 hz=$8 json=$9 polls=${10:-}
  local id presid dir dur
  id=$(sha1 "$extid")-$start
  presid=$(sha1 "$seed")-$((start + 2000))
  dir=$root/presentation/$id
  rm -rf "$dir"
  mkdir -p "$dir/video"
  svg_slides "$dir" "$presid" "$c1" "$c2"
  webcams_webm "$dir/video/webcams.webm" 8 "color=c=#606060" "sine=frequency=$hz:sample_rate=48000:duration=8"
  dur=$(duration_ms "$dir/video/webcams.webm")
  whiteboard_common "$dir" "$presid"
  printf '%s\n' "$json" >"$dir/tldraw.json"
  if [ -n "$polls" ]; then printf '%s\n' "$polls" >"$dir/polls.json"; fi
  metadata_xml "$dir/metadata.xml" presentation "$id" "$extid" "$name" "$start" "$dur" \
    "$(dir_size "$dir")" "$HOST/playback/presentation/2.3/$id" \
    "$(preview_xml "$id" "$presid" 2 'Slide 1' 'Slide 2')"$'\n'
  echo "$dir"
}

# =================================================================================================
# (f) BBB 2.7 recording, tldraw v1 whiteboard, 8 s: see README.md "Sample F".
gen_f() {
  # tldraw v1 shapes as the 2.7 client persists them: once, complete. Slide 1: a red freehand
  # zigzag at 1.0 s (stays), a red rectangle at 2.0 s undone at 3.0 s; slide 2: a red zigzag at 5.0 s.
  local style='"style":{"isFilled":false,"size":"large","scale":1,"color":"red","textAlign":"start","font":"script","dash":"draw"}'
  local zigzag='[[0,0,0.5],[200,150,0.5],[400,0,0.5],[600,150,0.5],[800,0,0.5],[1000,150,0.5]]'
  gen_whiteboard "$1" bbb-sample-whiteboard-2.7 1767279600000 slides-f "Sample whiteboard 2.7" \
    '#1414dc' '#e6c814' 550 \
    "{\"bbb_version\":\"2.7.4\",\"1\":{\"shapes\":[{\"id\":1,\"timestamp\":1.0,\"undo\":-1,\"shape_data\":{\"id\":\"4f0b3c52-6f2a-4d8e-9a51-0c7d2e1b9a01\",\"type\":\"draw\",\"name\":\"Draw\",\"parentId\":\"1\",\"childIndex\":1,\"point\":[150,650],\"rotation\":0,$style,\"points\":$zigzag,\"isComplete\":true,\"size\":[1000,150],\"userId\":\"w_erin\",\"isModerator\":true}},{\"id\":2,\"timestamp\":2.0,\"undo\":3.0,\"shape_data\":{\"id\":\"9d8e7f60-1a2b-4c3d-8e9f-0a1b2c3d4e02\",\"type\":\"rectangle\",\"name\":\"Rectangle\",\"parentId\":\"1\",\"childIndex\":2,\"point\":[1000,100],\"size\":[350,250],\"rotation\":0,$style,\"label\":\"\",\"labelPoint\":[0.5,0.5],\"userId\":\"w_erin\",\"isModerator\":true}}],\"timestamp\":0.0},\"2\":{\"shapes\":[{\"id\":3,\"timestamp\":5.0,\"undo\":-1,\"shape_data\":{\"id\":\"1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e403\",\"type\":\"draw\",\"name\":\"Draw\",\"parentId\":\"2\",\"childIndex\":1,\"point\":[150,700],\"rotation\":0,$style,\"points\":$zigzag,\"isComplete\":true,\"size\":[1000,150],\"userId\":\"w_erin\",\"isModerator\":true}}],\"timestamp\":4.0}}" >/dev/null
}

# =================================================================================================
# (g) BBB 3.0 recording, tldraw v2 whiteboard, 8 s: see README.md "Sample G".
gen_g() {
  # Full tldraw v2 records (the v2 validator rejects unknown base fields). Slide 1: a red stroke
  # drawn in two records as it grows (1.0 s: half, 1.5 s: whole), a red rectangle at 2.0 s undone
  # at 3.0 s; slide 2: a red stroke at 5.0 s.
  local base='"rotation":0,"isLocked":false,"opacity":1,"meta":{}'
  local drawp='"color":"red","fill":"none","dash":"draw","size":"xl"'
  local half='[{"x":0,"y":0,"z":0.5},{"x":200,"y":150,"z":0.5},{"x":400,"y":0,"z":0.5}]'
  local whole='[{"x":0,"y":0,"z":0.5},{"x":200,"y":150,"z":0.5},{"x":400,"y":0,"z":0.5},{"x":600,"y":150,"z":0.5},{"x":800,"y":0,"z":0.5},{"x":1000,"y":150,"z":0.5}]'
  local geop='"w":350,"h":250,"geo":"rectangle","color":"red","labelColor":"black","fill":"none","dash":"draw","size":"xl","font":"draw","text":"","align":"middle","verticalAlign":"middle","growY":0,"url":""'
  local dir
  dir=$(gen_whiteboard "$1" bbb-sample-whiteboard-3.0 1767283200000 slides-g "Sample whiteboard 3.0" \
    '#14b414' '#14c8c8' 770 \
    "{\"bbb_version\":\"3.0.4\",\"1\":{\"shapes\":[{\"id\":1,\"timestamp\":1.0,\"undo\":-1,\"shape_data\":{\"x\":150,\"y\":650,$base,\"id\":\"shape:stroke-1\",\"type\":\"draw\",\"props\":{\"segments\":[{\"type\":\"free\",\"points\":$half}],$drawp,\"isComplete\":false,\"isClosed\":false,\"isPen\":false},\"parentId\":\"page:1\",\"index\":\"a1\",\"typeName\":\"shape\"}},{\"id\":2,\"timestamp\":1.5,\"undo\":-1,\"shape_data\":{\"x\":150,\"y\":650,$base,\"id\":\"shape:stroke-1\",\"type\":\"draw\",\"props\":{\"segments\":[{\"type\":\"free\",\"points\":$whole}],$drawp,\"isComplete\":true,\"isClosed\":false,\"isPen\":false},\"parentId\":\"page:1\",\"index\":\"a1\",\"typeName\":\"shape\"}},{\"id\":3,\"timestamp\":2.0,\"undo\":3.0,\"shape_data\":{\"x\":1000,\"y\":100,$base,\"id\":\"shape:rect-1\",\"type\":\"geo\",\"props\":{$geop},\"parentId\":\"page:1\",\"index\":\"a2\",\"typeName\":\"shape\"}}],\"timestamp\":0.0},\"2\":{\"shapes\":[{\"id\":4,\"timestamp\":5.0,\"undo\":-1,\"shape_data\":{\"x\":150,\"y\":700,$base,\"id\":\"shape:stroke-2\",\"type\":\"draw\",\"props\":{\"segments\":[{\"type\":\"free\",\"points\":$whole}],$drawp,\"isComplete\":true,\"isClosed\":false,\"isPen\":false},\"parentId\":\"page:2\",\"index\":\"a1\",\"typeName\":\"shape\"}}],\"timestamp\":4.0}}" \
    '[{"timestamp":7,"type":"YN","question":"Was the whiteboard clear?","answers":[{"id":0,"key":"Yes","numVotes":2},{"id":1,"key":"No","numVotes":1}],"respondents":3,"responders":3}]')
  # Greenlight 3 is the usual front end of BBB 3.0 servers: bbb-origin* name it, not BBB.
  sed -i -e 's|<bbb-origin>Moodle</bbb-origin>|<bbb-origin>greenlight</bbb-origin>|' \
    -e 's|<bbb-origin-server-name>moodle.example.org</bbb-origin-server-name>|<bbb-origin-server-name>greenlight.example.org</bbb-origin-server-name>|' \
    -e 's|<bbb-origin-version>4.1.2 (Build: 20230313)</bbb-origin-version>|<bbb-origin-version>v3</bbb-origin-version>|' \
    -e '/<bbb-origin-tag>/d' "$dir/metadata.xml"
}

# Whether media files A and B are the same recording where an Opus encode differs by CPU: a WebM
# with the same streams, byte-identical picture packets, audio packets of the same times and
# durations, and decoded sound whose difference from B is at least 30 dB below B (two CPUs'
# encodes of one sound measured 41-53 dB; a volume change to 0.8 fails).
same_media() {
  local a=$1 b=$2
  [[ $a == *.webm ]] || return 1
  local streams='-show_entries stream=codec_type,codec_name -of csv=p=0'
  # shellcheck disable=SC2086 # the options are words
  [ "$(ffprobe -v error $streams "$a")" = "$(ffprobe -v error $streams "$b")" ] || return 1
  # shellcheck disable=SC2086
  if ffprobe -v error $streams "$a" | grep -q video; then
    [ "$(ffmpeg -nostdin -v error -i "$a" -map 0:v -c copy -f streamhash -hash sha256 -)" = \
      "$(ffmpeg -nostdin -v error -i "$b" -map 0:v -c copy -f streamhash -hash sha256 -)" ] || return 1
  fi
  local packets='-select_streams a -show_entries packet=pts,duration -of csv=p=0'
  # shellcheck disable=SC2086 # the options are words
  [ "$(ffprobe -v error $packets "$a")" = "$(ffprobe -v error $packets "$b")" ] || return 1
  python3 - "$a" "$b" <<'PY'
import array, math, subprocess, sys
def pcm(path):
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a", "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    return array.array("h", raw)
a, b = pcm(sys.argv[1]), pcm(sys.argv[2])
signal = sum(x * x for x in b)
noise = sum((x - y) ** 2 for x, y in zip(a, b))
snr = 10 * math.log10(signal / noise) if noise else math.inf
sys.exit(0 if len(a) == len(b) and len(b) > 0 and snr >= 30 else 1)
PY
}

gen_committed() {
  local root=$1
  mkdir -p "$root/presentation" "$root/video"
  gen_a "$root"
  gen_b "$root"
  gen_c "$root"
  gen_f "$root"
  gen_g "$root"
}


case ${1:-} in
  '')
    gen_committed "$HERE/recordings"
    ;;
  long | static)
    [ $# -ge 2 ] || die "usage: $0 $1 OUTDIR [MINUTES]"
    minutes=${3:-10}
    if [ "$1" = long ] && [[ $minutes =~ ^[1-9][0-9]{0,3}s$ ]]; then
      : # seconds (sample D only): a short timing sample
    else
      [[ $minutes =~ ^[1-9][0-9]{0,3}$ ]] || die "MINUTES must be an integer from 1 to 9999, got '$minutes'"
    fi
    mkdir -p "$2/presentation"
    "gen_$1" "$2" "$minutes"
    ;;
  check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    gen_committed "$tmp/1"
    gen_committed "$tmp/2"
    (cd "$tmp/1" && find . -type f | sort | xargs sha256sum) >"$tmp/1.sum"
    (cd "$tmp/2" && find . -type f | sort | xargs sha256sum) >"$tmp/2.sum"
    diff "$tmp/1.sum" "$tmp/2.sum" || die "two runs differ"
    # And the committed files are what this script produces now: byte for byte, except that an
    # Opus track may differ in its bits on another CPU (libopus picks its SIMD code at run time,
    # so an AVX-512 machine encodes the same sound a little differently); such a file must still
    # hold the same picture packets, the same audio packet timeline and the same sound.
    (cd "$HERE/recordings" && find . -type f | sort | xargs sha256sum) >"$tmp/committed.sum"
    [ "$(cut -c67- "$tmp/1.sum")" = "$(cut -c67- "$tmp/committed.sum")" ] ||
      die "samples/recordings does not hold the files a fresh generation makes (run samples/generate.sh)"
    near=0
    while read -r file; do
      same_media "$tmp/1/$file" "$HERE/recordings/$file" </dev/null ||
        die "samples/recordings/$file differs from a fresh generation (run samples/generate.sh)"
      near=$((near + 1))
    done < <(diff "$tmp/1.sum" "$tmp/committed.sum" | sed -n 's/^< [0-9a-f]\{64\}  \.\///p')
    echo "generate.sh: two runs identical and equal to samples/recordings ($(wc -l <"$tmp/1.sum") files, $near of them Opus tracks equal in picture, timeline and sound)"
    ;;
  *)
    die "usage: $0 [long OUTDIR [MINUTES] | static OUTDIR [MINUTES] | check]"
    ;;
esac
