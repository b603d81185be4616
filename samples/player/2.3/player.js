/*
 * player.js: the sample 2.3-style player's page logic: record id and URL params, loading the data
 * files and the media, the DOM (#player, #webcams .video-js with its .player object, control bar,
 * #presentation, #screenshare, #chat, #thumbnails), the layouts and the media clock that dispatches
 * `bbbplaybacktimeupdate`. Drawing is render.js's job.
 *
 * The contract it reproduces is docs bbb-playback.md "The 2.3 player's DOM contract". It must not be
 * easier to drive than the real player: no autoplay, no muting, nothing drawn before the first play
 * or seek, redraws only from the sampled clock (or an externally dispatched event).
 */
(function () {
  'use strict';

  const R = window.BBBSampleRender;
  const W = window.BBBSampleWhiteboard;
  const RECORD_ID = /^[a-z0-9]{40}-[0-9]{13}$/;
  const TIME_UPDATE = 'bbbplaybacktimeupdate';
  const DEFAULT_RPS = 10;
  // The real player waits this long after loading before it mounts (loader "feedback" delay).
  const MOUNT_DELAY_MS = 1000;

  const params = new URLSearchParams(window.location.search);
  const root = document.getElementById('root');

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === 'class') e.className = attrs[k];
      else if (k === 'text') e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of children || []) e.appendChild(c);
    return e;
  }

  function showError(code) {
    root.textContent = '';
    root.appendChild(el('div', { id: 'error', class: 'error-wrapper' },
      [el('div', { class: 'error-code', text: String(code) })]));
  }

  // t=1h2m3s | 2m3s | 3s (minutes and seconds below 60); anything else is ignored.
  function parseTime(value) {
    if (!value) return null;
    const m = /^(?:(?:(\d+)h)?(\d+)m)?(\d+)s$/.exec(value);
    if (!m) return null;
    const h = parseInt(m[1] || '0', 10);
    const min = parseInt(m[2] || '0', 10);
    const s = parseInt(m[3], 10);
    if (min >= 60 || s >= 60) return null;
    return h * 3600 + min * 60 + s;
  }

  // The record id is the last path segment: /playback/presentation/2.3/<recordId>.
  const recordId = window.location.pathname.split('/').filter(s => s.length > 0).pop() || '';
  if (!RECORD_ID.test(recordId)) {
    showError(400);
    return;
  }

  // p=path is inserted between /presentation and the id, as the real player builds file URLs.
  const mediaPath = (params.get('p') || '').replace(/^\/+|\/+$/g, '');
  const base = '/presentation/' + (mediaPath ? mediaPath + '/' : '') + recordId + '/';
  const fileUrl = (file) => base + file;

  const layoutMode = params.get('l');
  const frequency = parseFloat(params.get('f'));
  const rps = frequency > 0 ? frequency : DEFAULT_RPS;
  const startTime = parseTime(params.get('t'));

  root.appendChild(el('div', { id: 'loader', class: 'loader-wrapper' }, [
    el('div', { class: 'loader-middle' },
      [el('span', { class: 'dot' }), el('span', { class: 'dot' }), el('span', { class: 'dot' })]),
  ]));

  // Media: webcams (mp4 preferred, as the real player lists it first), else the audio-only fallback.
  function probeMedia() {
    const video = ['video/webcams.mp4', 'video/webcams.webm'];
    return Promise.all(video.map(f => R.exists(fileUrl(f)))).then(found => {
      const files = video.filter((f, i) => found[i]);
      if (files.length > 0) return { files: files, audioOnly: false };
      const audio = ['audio/audio.webm', 'audio/audio.ogg'];
      return Promise.all(audio.map(f => R.exists(fileUrl(f)))).then(found2 => {
        const files2 = audio.filter((f, i) => found2[i]);
        return files2.length > 0 ? { files: files2, audioOnly: true } : null;
      });
    });
  }

  // Test knobs (whiteboard.js): served only by the project's test server; anything else is none.
  function fetchKnobs() {
    return R.fetchText('/playback/presentation/2.3/knobs.json').then(r => {
      try {
        const k = r.ok ? JSON.parse(r.text) : null;
        return k && typeof k === 'object' ? k : {};
      } catch (e) {
        return {};
      }
    });
  }

  const names = ['metadata.xml', 'shapes.svg', 'panzooms.xml', 'cursor.xml', 'deskshare.xml', 'slides_new.xml', 'tldraw.json',
    'polls.json', 'external_videos.json'];
  Promise.all([Promise.all(names.map(n => R.fetchText(fileUrl(n)))), probeMedia(), fetchKnobs()]).then(([files, media, knobs]) => {
    const byName = {};
    names.forEach((n, i) => { byName[n] = files[i]; });
    // metadata, panzooms and cursor are required (the real player cannot render without them);
    // the others may be missing.
    if (!byName['metadata.xml'].ok || !byName['panzooms.xml'].ok || !byName['cursor.xml'].ok || !media) {
      showError(404);
      return;
    }
    let data;
    try {
      const xml = (n) => R.parseXml(byName[n].ok ? byName[n].text : null);
      data = {
        metadata: R.parseMetadata(xml('metadata.xml')),
        shapes: R.parseShapes(xml('shapes.svg')),
        panzooms: R.parsePanzooms(xml('panzooms.xml')),
        cursor: R.parseCursor(xml('cursor.xml')),
        deskshare: R.parseDeskshare(xml('deskshare.xml')),
        chat: R.mergeMessages(
          R.parseChat(xml('slides_new.xml')),
          R.parsePolls(byName['polls.json'].ok ? byName['polls.json'].text : null),
          R.parseExternalVideos(byName['external_videos.json'].ok ? byName['external_videos.json'].text : null)),
      };
      // BBB 2.6+: the whiteboard is tldraw data (the real player's test: entries, or the
      // tldraw="true" roots of panzooms.xml / cursor.xml).
      const entries = W.parse(byName['tldraw.json'].ok ? byName['tldraw.json'].text : null);
      if (entries.length > 0 || data.panzooms.tldraw || data.cursor.tldraw) {
        data.whiteboard = new W.Whiteboard({ entries: entries, knobs: knobs });
      }
      data.knobs = knobs;
    } catch (e) {
      showError(400);
      return;
    }
    setTimeout(() => mount(data, media), MOUNT_DELAY_MS);
  }).catch(() => showError(404));

  // --- the mounted player ---------------------------------------------------------------------

  function mount(data, media) {
    // Ids like video.js's generated ones, different on every load: select by structure instead.
    const vjsId = 'vjs_video_' + (3 + Math.floor(Math.random() * 997));

    const video = el('video', { id: vjsId + '_html5_api', class: 'vjs-tech', preload: 'auto', playsinline: '', tabindex: '-1' });
    const mediaFile = media.files[0];
    video.src = fileUrl(mediaFile);

    const bigPlay = el('button', { class: 'vjs-big-play-button', type: 'button', title: 'Play Video' },
      [el('span', { class: 'vjs-icon-placeholder' })]);
    const spinner = el('div', { class: 'vjs-loading-spinner', dir: 'ltr' });
    const playControl = el('button', { class: 'vjs-play-control vjs-control vjs-button vjs-paused', type: 'button', title: 'Play' },
      [el('span', { class: 'vjs-icon-placeholder' })]);
    const currentTimeEl = el('span', { class: 'vjs-current-time-display', text: '0:00' });
    const durationEl = el('span', { class: 'vjs-duration-display', text: '0:00' });
    const playProgress = el('div', { class: 'vjs-play-progress' });
    const progressHolder = el('div', { class: 'vjs-progress-holder vjs-slider' }, [playProgress]);
    const controlBar = el('div', { class: 'vjs-control-bar', dir: 'ltr' }, [
      playControl,
      el('div', { class: 'vjs-current-time vjs-time-control' }, [currentTimeEl]),
      el('div', { class: 'vjs-time-control vjs-time-divider' }, [el('span', { text: '/' })]),
      el('div', { class: 'vjs-duration vjs-time-control' }, [durationEl]),
      el('div', { class: 'vjs-progress-control vjs-control' }, [progressHolder]),
    ]);
    const vjs = el('div', { id: vjsId, class: 'video-js vjs-paused vjs-fill', tabindex: '-1' },
      [video, spinner, bigPlay, controlBar]);
    vjs.player = playerApi(video, vjs);

    const webcams = el('div', { id: 'webcams', class: 'webcams-wrapper' + (media.audioOnly ? ' audio-only' : '') }, [vjs]);

    // Top bar: title "<meetingName> - <date>"; buttons only when the layout is interactive.
    const interactive = layoutMode !== 'disabled';
    const date = new Date(data.metadata.start).toLocaleDateString('en-US');
    const title = el('span', { class: 'title' + (interactive ? ' interactive' : ''), text: data.metadata.name + ' - ' + date });
    const left = el('div', { class: 'left' });
    const right = el('div', { class: 'right' });
    const topBar = el('div', { class: 'top-bar' }, [left, el('div', { class: 'center' }, [title]), right]);

    const chat = el('div', { id: 'chat', class: 'chat-wrapper', tabindex: '0' });
    const presentationInner = el('div', { class: 'presentation' });
    const presentation = el('div', { id: 'presentation', class: 'presentation-wrapper' }, [presentationInner]);
    const thumbnails = el('div', { id: 'thumbnails', class: 'thumbnails-wrapper', tabindex: '0' });
    const topContent = el('div', { class: 'top-content' }, [presentation]);

    // Screen share only exists when deskshare.xml has intervals, like the real player.
    let ssVideo = null;
    let ssWrapper = null;
    if (data.deskshare.length > 0) {
      const ext = mediaFile.endsWith('.mp4') ? 'mp4' : 'webm';
      ssVideo = el('video', { id: 'vjs_video_' + (1000 + Math.floor(Math.random() * 9000)) + '_html5_api', class: 'vjs-tech', preload: 'auto', playsinline: '', tabindex: '-1' });
      ssVideo.muted = true;
      ssVideo.src = fileUrl('deskshare/deskshare.' + ext);
      ssWrapper = el('div', { id: 'screenshare', class: 'screenshare-wrapper inactive' },
        [el('div', { class: 'video-js vjs-fill' }, [ssVideo])]);
      topContent.appendChild(ssWrapper);
    }

    const player = el('div', { id: 'player', class: 'player-wrapper' }, [
      topBar,
      el('div', { class: 'media' }, [webcams]),
      el('div', { class: 'application' }, [chat]),
      el('div', { class: 'content' }, [topContent, el('div', { class: 'bottom-content' }, [thumbnails])]),
      el('div', { class: 'bottom-bar' }),
    ]);

    // Layouts (docs bbb-playback.md, URL param l).
    if (layoutMode === 'content') player.classList.add('hidden-section');
    else if (layoutMode === 'media') player.classList.add('media-only');
    else if (layoutMode === 'swapped') player.classList.add('swapped');
    if (interactive) {
      const section = el('button', { class: 'button section', type: 'button', title: 'Toggle sidebar', text: '\u2630' });
      section.addEventListener('click', () => player.classList.toggle('hidden-section'));
      left.appendChild(section);
      const swap = el('button', { class: 'button swap', type: 'button', title: 'Swap', text: '\u21c4' });
      swap.addEventListener('click', () => player.classList.toggle('swapped'));
      right.appendChild(swap);
    }

    const renderer = new R.Renderer({
      data: data,
      fileUrl: fileUrl,
      presentation: presentationInner,
      chat: chat,
      thumbnails: thumbnails,
      onSeek: (t) => { video.currentTime = t; },
      whiteboard: data.whiteboard,
    });
    renderer.preload();

    // Every redraw comes from this event, whoever dispatched it (our clock or a test/recorder).
    document.addEventListener(TIME_UPDATE, (event) => {
      const t = event.detail && event.detail.time;
      const r = renderer.draw(t);
      if (!r) return;
      const share = ssWrapper !== null && r.screenshare;
      presentation.classList.toggle('inactive', share);
      if (ssWrapper) ssWrapper.classList.toggle('inactive', !share);
    });

    root.textContent = '';
    root.appendChild(player);

    wireClock(video, rps);
    if (data.knobs.pageTone > 0) wirePageTone(video, data.knobs.pageTone);
    // Test knob `mirrorWebcam`: the webcam shown mirrored, as a self-view is (a transformed
    // video, which fast mode does not place).
    if (data.knobs.mirrorWebcam) video.style.transform = 'scaleX(-1)';
    wireControls(video, vjs, bigPlay, playControl, progressHolder, playProgress, currentTimeEl, durationEl, spinner);
    if (ssVideo) wireScreenshare(video, ssVideo);

    if (startTime !== null) {
      video.addEventListener('loadedmetadata', () => {
        if (startTime < video.duration) video.currentTime = startTime;
      }, { once: true });
    }
  }

  // A minimal stand-in for the video.js player object at `#webcams .video-js`.player.
  function playerApi(video, div) {
    return {
      el: () => div,
      tech: () => video,
      play: () => video.play(),
      pause: () => video.pause(),
      paused: () => video.paused,
      ended: () => video.ended,
      duration: () => video.duration,
      currentTime: (t) => {
        if (t === undefined) return video.currentTime;
        video.currentTime = t;
        return t;
      },
      playbackRate: (r) => {
        if (r === undefined) return video.playbackRate;
        video.playbackRate = r;
        return r;
      },
      volume: (v) => {
        if (v === undefined) return video.volume;
        video.volume = v;
        return v;
      },
      muted: (m) => {
        if (m === undefined) return video.muted;
        video.muted = m;
        return m;
      },
      on: (type, fn) => video.addEventListener(type, fn),
      off: (type, fn) => video.removeEventListener(type, fn),
      one: (type, fn) => video.addEventListener(type, fn, { once: true }),
    };
  }

  // Test knob `pageTone`: from the first play on, the page plays a steady tone of its own (Web
  // Audio) and the media itself is muted, so what the browser plays differs from the recording's
  // own sound.
  function wirePageTone(video, hz) {
    video.muted = true;
    let ctx = null;
    video.addEventListener('play', () => {
      if (ctx) return;
      ctx = new AudioContext({ sampleRate: 48000 });
      const osc = ctx.createOscillator();
      osc.frequency.value = hz;
      const gain = ctx.createGain();
      gain.gain.value = 0.125;
      osc.connect(gain).connect(ctx.destination);
      osc.start();
    });
  }

  // The media clock: sample currentTime `rps` times a second while playing, once after each seek.
  function wireClock(video, rps) {
    let timer = null;
    const sample = () => {
      document.dispatchEvent(new CustomEvent(TIME_UPDATE, { detail: { time: video.currentTime } }));
    };
    video.addEventListener('play', () => {
      if (timer !== null) clearInterval(timer);
      timer = setInterval(sample, 1000 / rps);
    });
    video.addEventListener('pause', () => {
      if (timer !== null) clearInterval(timer);
      timer = null;
    });
    video.addEventListener('seeked', sample);
  }

  function wireControls(video, vjs, bigPlay, playControl, progressHolder, playProgress, currentTimeEl, durationEl, spinner) {
    const cls = vjs.classList;
    const toggle = () => {
      if (video.paused) video.play().catch(() => {});
      else video.pause();
    };
    bigPlay.addEventListener('click', () => video.play().catch(() => {}));
    playControl.addEventListener('click', toggle);
    video.addEventListener('click', toggle);
    // Alt+Shift+Enter toggles playback, as the real player's shortcut does.
    document.addEventListener('keydown', (e) => {
      if (e.altKey && e.shiftKey && e.key === 'Enter') {
        e.preventDefault();
        toggle();
      }
    });
    progressHolder.addEventListener('click', (e) => {
      const box = progressHolder.getBoundingClientRect();
      if (box.width > 0 && isFinite(video.duration)) {
        video.currentTime = Math.max(0, Math.min(1, (e.clientX - box.left) / box.width)) * video.duration;
      }
    });

    const updateTime = () => {
      currentTimeEl.textContent = R.formatTime(video.currentTime);
      const d = video.duration;
      playProgress.style.width = isFinite(d) && d > 0 ? (100 * video.currentTime / d) + '%' : '0%';
    };
    video.addEventListener('timeupdate', updateTime);
    video.addEventListener('durationchange', () => {
      durationEl.textContent = isFinite(video.duration) ? R.formatTime(video.duration) : '0:00';
    });
    video.addEventListener('play', () => {
      cls.remove('vjs-paused', 'vjs-ended');
      cls.add('vjs-playing', 'vjs-has-started');
      playControl.classList.remove('vjs-paused');
      playControl.classList.add('vjs-playing');
      playControl.title = 'Pause';
    });
    video.addEventListener('pause', () => {
      cls.remove('vjs-playing');
      cls.add('vjs-paused');
      playControl.classList.remove('vjs-playing');
      playControl.classList.add('vjs-paused');
      playControl.title = 'Play';
    });
    video.addEventListener('ended', () => {
      cls.add('vjs-ended');
      playControl.title = 'Replay';
    });
    video.addEventListener('seeking', () => {
      cls.add('vjs-seeking');
      cls.remove('vjs-ended');
      updateTime();
    });
    video.addEventListener('seeked', () => cls.remove('vjs-seeking'));
    video.addEventListener('waiting', () => cls.add('vjs-waiting'));
    for (const t of ['playing', 'canplay', 'canplaythrough']) video.addEventListener(t, () => cls.remove('vjs-waiting'));
    video.addEventListener('error', () => cls.add('vjs-error'));
    void spinner; // shown by CSS from .vjs-waiting / .vjs-seeking
  }

  // The screen share follows the webcams player: play, pause, seek, rate. When one of the two
  // stalls while the other can play, the webcams player pauses until the stalled one can play.
  function wireScreenshare(primary, secondary) {
    const status = { primary: 'waiting', secondary: 'waiting' };
    let synching = false;
    for (const s of ['canplay', 'seeking', 'waiting']) {
      primary.addEventListener(s, () => { status.primary = s; });
      secondary.addEventListener(s, () => { status.secondary = s; });
    }
    primary.addEventListener('play', () => { secondary.play().catch(() => {}); });
    primary.addEventListener('pause', () => secondary.pause());
    primary.addEventListener('seeking', () => { secondary.currentTime = primary.currentTime; });
    primary.addEventListener('ratechange', () => { secondary.playbackRate = primary.playbackRate; });
    const stall = (other) => () => {
      if (!synching && status[other] === 'canplay' && !primary.paused) {
        synching = true;
        primary.pause();
      }
    };
    const resume = () => {
      if (synching) {
        synching = false;
        primary.play().catch(() => {});
      }
    };
    primary.addEventListener('waiting', stall('secondary'));
    secondary.addEventListener('waiting', stall('primary'));
    primary.addEventListener('canplay', resume);
    secondary.addEventListener('canplay', resume);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') secondary.currentTime = primary.currentTime;
    });
  }
})();
