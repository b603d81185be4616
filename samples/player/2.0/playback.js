/*
 * playback.js: page logic of the sample legacy 2.0-style player (playback.html): ?meetingId= and
 * ?t= params, loading the recording, the #video media element (audio for audio-only recordings),
 * #deskshare-video slaved to it, the acorn-style controls, and redrawing the presentation from the
 * media element's own timeupdate/seeked events, as the legacy Popcorn.js player did (a few redraws
 * a second; no bbbplaybacktimeupdate events on this page).
 */
(function () {
  'use strict';

  const R = window.BBBSampleRender;
  const RECORD_ID = /^[a-z0-9]{40}-[0-9]{13}$/;
  const params = new URLSearchParams(window.location.search);
  const recordId = params.get('meetingId') || '';
  const message = document.getElementById('load-recording-msg');
  const content = document.getElementById('playback-content');

  function fail(text) {
    message.textContent = text;
  }

  // t=1h2m3s, 1m30s, 90s or plain seconds.
  function parseTime(value) {
    if (!value) return null;
    if (/^\d+(\.\d+)?$/.test(value)) return parseFloat(value);
    const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(value);
    if (!m || value.length === 0) return null;
    return parseInt(m[1] || '0', 10) * 3600 + parseInt(m[2] || '0', 10) * 60 + parseInt(m[3] || '0', 10);
  }

  if (!RECORD_ID.test(recordId)) {
    fail('Invalid recording identifier.');
    return;
  }
  const base = '/presentation/' + recordId + '/';
  const fileUrl = (file) => base + file;
  const startTime = parseTime(params.get('t'));

  const names = ['metadata.xml', 'shapes.svg', 'panzooms.xml', 'cursor.xml', 'deskshare.xml', 'slides_new.xml'];
  Promise.all([
    Promise.all(names.map(n => R.fetchText(fileUrl(n)))),
    R.exists(fileUrl('video/webcams.webm')),
    R.exists(fileUrl('audio/audio.webm')),
  ]).then(([files, hasVideo, hasAudio]) => {
    const byName = {};
    names.forEach((n, i) => { byName[n] = files[i]; });
    if (!byName['metadata.xml'].ok || !byName['shapes.svg'].ok || (!hasVideo && !hasAudio)) {
      fail('This recording could not be found.');
      return;
    }
    const xml = (n) => R.parseXml(byName[n].ok ? byName[n].text : null);
    let data;
    try {
      data = {
        metadata: R.parseMetadata(xml('metadata.xml')),
        shapes: R.parseShapes(xml('shapes.svg')),
        panzooms: R.parsePanzooms(xml('panzooms.xml')),
        cursor: R.parseCursor(xml('cursor.xml')),
        deskshare: R.parseDeskshare(xml('deskshare.xml')),
        chat: R.parseChat(xml('slides_new.xml')),
      };
    } catch (e) {
      fail('This recording is damaged.');
      return;
    }
    start(data, hasVideo);
  });

  function start(data, hasVideo) {
    document.title = data.metadata.name;
    const media = document.createElement(hasVideo ? 'video' : 'audio');
    media.id = 'video';
    media.preload = 'auto';
    media.src = fileUrl(hasVideo ? 'video/webcams.webm' : 'audio/audio.webm');
    document.getElementById('video-area').appendChild(media);

    let desk = null;
    if (data.deskshare.length > 0) {
      desk = document.createElement('video');
      desk.id = 'deskshare-video';
      desk.muted = true;
      desk.preload = 'auto';
      desk.src = fileUrl('deskshare/deskshare.webm');
      document.getElementById('deskshare-area').appendChild(desk);
      media.addEventListener('play', () => { desk.play().catch(() => {}); });
      media.addEventListener('pause', () => desk.pause());
      media.addEventListener('seeking', () => { desk.currentTime = media.currentTime; });
      media.addEventListener('ratechange', () => { desk.playbackRate = media.playbackRate; });
    }

    const slide = document.getElementById('slide');
    const deskArea = document.getElementById('deskshare-area');
    const renderer = new R.Renderer({
      data: data,
      fileUrl: fileUrl,
      presentation: slide,
      chat: document.getElementById('chat'),
      thumbnails: document.getElementById('thumbnails'),
      onSeek: (t) => { media.currentTime = t; },
    });
    renderer.preload();
    const redraw = () => {
      const r = renderer.draw(media.currentTime);
      if (!r) return;
      const share = desk !== null && r.screenshare;
      deskArea.classList.toggle('inactive', !share);
      slide.classList.toggle('inactive', share);
    };
    media.addEventListener('timeupdate', redraw);
    media.addEventListener('seeked', redraw);

    const button = document.querySelector('.acorn-play-button');
    const timer = document.querySelector('.acorn-timer');
    const slider = document.querySelector('.acorn-seek-slider');
    button.addEventListener('click', () => {
      if (media.paused) media.play().catch(() => {});
      else media.pause();
    });
    media.addEventListener('play', () => { button.textContent = 'Pause'; button.title = 'Pause'; button.classList.add('acorn-paused-button'); });
    media.addEventListener('pause', () => { button.textContent = 'Play'; button.title = 'Play'; button.classList.remove('acorn-paused-button'); });
    media.addEventListener('timeupdate', () => {
      timer.textContent = R.formatTime(media.currentTime);
      slider.value = media.currentTime;
    });
    slider.addEventListener('input', () => { media.currentTime = parseFloat(slider.value); });

    media.addEventListener('loadedmetadata', () => {
      slider.max = media.duration;
      if (startTime !== null && startTime < media.duration) media.currentTime = startTime;
      redraw();
      message.style.display = 'none';
      content.style.display = '';
    }, { once: true });
    media.addEventListener('error', () => fail('The recording media could not be played.'), { once: true });
  }
})();
