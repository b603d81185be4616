/*
 * render.js: the presentation renderer shared by the sample 2.3 player (player.js) and the sample
 * legacy 2.0 player (../2.0/playback.js). It owns parsing a recording's data files (metadata.xml,
 * shapes.svg, panzooms.xml, cursor.xml, deskshare.xml, slides_new.xml, and for the 2.3 player
 * polls.json and external_videos.json, merged into the chat) and drawing the state at a
 * media time t: slide, annotations, zoom (viewBox), cursor, chat, thumbnails, screen-share switch.
 * It never touches the media elements or the clock: the players decide when to call draw(t).
 *
 * Formats and the "what is current at time t" rules follow the real player as described in
 * docs bbb-playback.md: an item is current from its timestamp until the next item's timestamp,
 * slide out= times are not used (they can run past the media end), a shape is visible from its
 * timestamp until its undo time (-1 = never undone), and of consecutive drafts of one shape only the
 * latest visible one is drawn.
 */
(function () {
  'use strict';

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const XLINK_NS = 'http://www.w3.org/1999/xlink';

  // --- parsing ---------------------------------------------------------------------------------

  function parseXml(text) {
    if (!text) return null;
    const doc = new DOMParser().parseFromString(text, 'application/xml');
    if (doc.getElementsByTagName('parsererror').length > 0) throw new Error('malformed XML');
    return doc;
  }

  function numbers(text) {
    return (text || '').trim().split(/\s+/).filter(s => s.length > 0).map(parseFloat);
  }

  function trailingNumber(text) {
    const m = /(\d+)$/.exec(text || '');
    return m ? parseInt(m[1], 10) : -1;
  }

  function childText(parent, name) {
    const el = parent && parent.getElementsByTagName(name)[0];
    return el ? el.textContent.trim() : '';
  }

  function parseMetadata(doc) {
    const rec = doc.documentElement;
    const meeting = rec.getElementsByTagName('meeting')[0];
    const meta = rec.getElementsByTagName('meta')[0];
    const playback = rec.getElementsByTagName('playback')[0];
    const name = childText(meta, 'meetingName') || (meeting ? meeting.getAttribute('name') : '') || '';
    return {
      id: childText(rec, 'id') || (meeting ? meeting.getAttribute('id') : ''),
      name: name,
      start: parseInt(childText(rec, 'start_time'), 10),
      end: parseInt(childText(rec, 'end_time'), 10),
      duration: parseInt(childText(playback, 'duration'), 10),
    };
  }

  // Slides: one entry per time a slide is shown (an <image> may list several in= times).
  // Canvases: the annotation groups of each image, in document order.
  function parseShapes(doc) {
    const slides = [];
    const canvases = {};
    if (!doc) return { slides: slides, canvases: canvases };
    for (const img of Array.from(doc.getElementsByTagName('image'))) {
      if (!img.classList.contains('slide')) continue;
      const src = img.getAttributeNS(XLINK_NS, 'href') || img.getAttribute('xlink:href');
      // The placeholder image0 has a plain src= attribute: not a slide.
      if (!src) continue;
      const imageId = img.getAttribute('id');
      for (const t of numbers(img.getAttribute('in'))) {
        slides.push({
          imageId: imageId,
          number: trailingNumber(imageId),
          src: src,
          width: parseFloat(img.getAttribute('width')),
          height: parseFloat(img.getAttribute('height')),
          timestamp: t,
        });
      }
    }
    slides.sort((a, b) => a.timestamp - b.timestamp);

    for (const g of Array.from(doc.getElementsByTagName('g'))) {
      if (!g.classList.contains('canvas')) continue;
      // The real player's shapes builder fails on a canvas group without shapes, and the page
      // shows error 400: so does this one.
      if (!Array.from(g.children).some(s => s.classList.contains('shape'))) {
        throw new Error('shapes.svg: empty canvas group for ' + g.getAttribute('image'));
      }
      const shapes = [];
      for (const s of Array.from(g.children)) {
        if (!s.classList.contains('shape')) continue;
        const drawing = s.firstElementChild;
        if (!drawing) continue;
        shapes.push({
          timestamp: parseFloat(s.getAttribute('timestamp')),
          undo: parseFloat(s.getAttribute('undo')),
          shape: s.getAttribute('shape'),
          style: (s.getAttribute('style') || '').split(';')
            .filter(d => d.trim().length > 0 && d.split(':')[0].trim() !== 'visibility').join(';'),
          node: drawing,
        });
      }
      canvases[g.getAttribute('image')] = shapes;
    }
    return { slides: slides, canvases: canvases };
  }

  function parseEvents(doc, read) {
    if (!doc) return [];
    return Array.from(doc.getElementsByTagName('event')).map(read)
      .sort((a, b) => a.timestamp - b.timestamp);
  }

  // BBB 2.6+ marks the roots of panzooms.xml and cursor.xml with tldraw="true" (whiteboard mode).
  function tldrawRoot(doc) {
    return !!doc && doc.documentElement.getAttribute('tldraw') === 'true';
  }

  function parsePanzooms(doc) {
    const list = parseEvents(doc, e => {
      const v = numbers(childText(e, 'viewBox'));
      return { timestamp: parseFloat(e.getAttribute('timestamp')), x: v[0], y: v[1], width: v[2], height: v[3] };
    });
    list.tldraw = tldrawRoot(doc);
    return list;
  }

  function parseCursor(doc) {
    const list = parseEvents(doc, e => {
      const p = numbers(childText(e, 'cursor'));
      return { timestamp: parseFloat(e.getAttribute('timestamp')), x: p[0], y: p[1] };
    });
    list.tldraw = tldrawRoot(doc);
    return list;
  }

  function parseDeskshare(doc) {
    return parseEvents(doc, e => ({
      timestamp: parseFloat(e.getAttribute('start_timestamp')),
      stop: parseFloat(e.getAttribute('stop_timestamp')),
      width: parseInt(e.getAttribute('video_width'), 10),
      height: parseInt(e.getAttribute('video_height'), 10),
    }));
  }

  // BBB stores links in chat messages as an <a> element serialized into the attribute.
  function plainMessage(message) {
    return message.replace(/<a href="(.*?)" rel="nofollow"><u>\1<\/u><\/a>/g, '$1');
  }

  function parseChat(doc) {
    if (!doc) return [];
    return Array.from(doc.getElementsByTagName('chattimeline')).map(c => ({
      timestamp: parseFloat(c.getAttribute('in')),
      clear: c.hasAttribute('out') ? parseFloat(c.getAttribute('out')) : -1,
      name: c.getAttribute('name') || '',
      message: plainMessage(c.getAttribute('message') || ''),
      moderator: c.getAttribute('senderRole') === 'MODERATOR',
      emphasized: c.getAttribute('chatEmphasizedText') === 'true',
    })).sort((a, b) => a.timestamp - b.timestamp);
  }

  // polls.json and external_videos.json (JSON lists written by BBB's presentation publisher).
  // The real player merges them into the chat list: each one is a system message shown from its
  // timestamp, never cleared. A file that is not a list of objects is a bad recording.
  function parseJsonList(text) {
    if (text === null) return [];
    const list = JSON.parse(text);
    if (!Array.isArray(list) || !list.every(i => i && typeof i === 'object')) {
      throw new Error('not a JSON list of objects');
    }
    return list;
  }

  function parsePolls(text) {
    return parseJsonList(text).map(p => ({
      timestamp: Number(p.timestamp),
      clear: -1,
      poll: {
        question: String(p.question || ''),
        answers: (Array.isArray(p.answers) ? p.answers : []).map(a => ({
          key: String(a.key), votes: Number(a.numVotes) || 0,
        })),
        responders: Number(p.responders) || 0,
      },
    }));
  }

  function parseExternalVideos(text) {
    return parseJsonList(text).map(v => ({
      timestamp: Number(v.timestamp),
      clear: -1,
      url: String(v.external_video_url || ''),
    }));
  }

  // The chat list as the real player builds it: chat, then polls, then videos, sorted by time
  // (a stable sort keeps that order for equal times).
  function mergeMessages(chat, polls, videos) {
    return chat.concat(polls, videos).sort((a, b) => a.timestamp - b.timestamp);
  }

  // --- time lookups -----------------------------------------------------------------------------

  // Index of the last item whose timestamp <= t, or -1.
  function currentIndex(list, t) {
    let lo = 0;
    let hi = list.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].timestamp <= t) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  function inDeskshare(intervals, t) {
    return intervals.some(i => i.timestamp <= t && t < i.stop);
  }

  function formatTime(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = String(s % 60).padStart(2, '0');
    return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + r : m + ':' + r;
  }

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG_NS, name);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    return el;
  }

  function htmlEl(name, cls, text) {
    const el = document.createElement(name);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // --- renderer ---------------------------------------------------------------------------------

  /*
   * new Renderer({data, fileUrl, presentation, chat, thumbnails, onSeek})
   *   data: {shapes, panzooms, cursor, deskshare, chat} as parsed above
   *   fileUrl(path): absolute URL of a recording file
   *   presentation: the element that receives the <svg> (class "logo" until the first draw)
   *   chat, thumbnails: optional containers
   *   onSeek(t): optional, called when a thumbnail is clicked
   *   whiteboard: optional BBBSampleWhiteboard.Whiteboard (BBB 2.6+ recordings): it draws the
   *     annotations instead of shapes.svg's canvas groups, and may show an error screen instead
   * draw(t) returns {screenshare: bool}; the caller switches the screen-share view.
   */
  class Renderer {
    constructor(opts) {
      this.data = opts.data;
      this.fileUrl = opts.fileUrl;
      this.presentation = opts.presentation;
      this.state = {};
      this.presentation.classList.add('logo');

      // Until the first draw the viewBox is empty, so nothing of the slide shows (the logo does).
      this.svg = svgEl('svg', { viewBox: '0 0 0 0', preserveAspectRatio: 'xMidYMid meet' });
      this.svg.setAttributeNS('http://www.w3.org/2000/xmlns/', 'xmlns:xlink', XLINK_NS);
      const defs = svgEl('defs', {});
      const clip = svgEl('clipPath', { id: 'viewBox' });
      this.clipRect = svgEl('rect', { x: 0, y: 0, width: 0, height: 0 });
      clip.appendChild(this.clipRect);
      defs.appendChild(clip);
      this.svg.appendChild(defs);
      const group = svgEl('g', { 'clip-path': 'url(#viewBox)' });
      this.slideGroup = svgEl('g', { class: 'slide' });
      this.canvasGroup = svgEl('g', { class: 'canvas' });
      this.cursor = svgEl('circle', { class: 'cursor' });
      group.appendChild(this.slideGroup);
      group.appendChild(this.canvasGroup);
      this.cursorParent = group;
      this.svg.appendChild(group);
      this.presentation.appendChild(this.svg);
      this.whiteboard = opts.whiteboard || null;
      // The whiteboard's error screen (tldraw's ErrorScreen), shown instead of the slide.
      this.errorScreen = htmlEl('div', 'tl-loading tl-error-screen');
      this.errorScreen.style.display = 'none';
      this.presentation.appendChild(this.errorScreen);

      this.chatItems = [];
      if (opts.chat) this.buildChat(opts.chat);
      this.thumbItems = [];
      if (opts.thumbnails) this.buildThumbnails(opts.thumbnails, opts.onSeek);
    }

    buildChat(container) {
      const list = htmlEl('div', 'list');
      const wrapper = htmlEl('div', 'message-wrapper');
      for (const m of this.data.chat) {
        const system = m.poll || m.url !== undefined;
        const item = htmlEl('div', 'message inactive' + (m.moderator ? ' moderator' : '')
          + (system ? ' system' : ''));
        const info = htmlEl('div', 'info');
        info.appendChild(htmlEl('span', 'name', m.poll ? 'Poll' : system ? 'External video' : m.name));
        info.appendChild(htmlEl('span', 'time', formatTime(m.timestamp)));
        item.appendChild(info);
        if (m.poll) {
          if (m.poll.question) item.appendChild(htmlEl('div', 'text', m.poll.question));
          for (const a of m.poll.answers) {
            const share = m.poll.responders > 0 ? Math.round(100 * a.votes / m.poll.responders) : 0;
            item.appendChild(htmlEl('div', 'text poll-answer', a.key + ': ' + a.votes + ' (' + share + '%)'));
          }
        } else if (system) {
          item.appendChild(htmlEl('div', 'text', m.url));
        } else {
          item.appendChild(htmlEl('div', 'text' + (m.emphasized ? ' emphasized' : ''), m.message));
        }
        wrapper.appendChild(item);
        this.chatItems.push(item);
      }
      list.appendChild(wrapper);
      container.appendChild(list);
      this.chatContainer = container;
    }

    buildThumbnails(container, onSeek) {
      this.data.shapes.slides.forEach((s, i) => {
        const item = htmlEl('div', 'thumbnail-wrapper');
        item.tabIndex = 0;
        const thumb = htmlEl('div', 'thumbnail');
        const img = htmlEl('img', 'thumbnail-image');
        img.src = this.fileUrl(s.src.replace('slide-', 'thumbnails/thumb-'));
        img.alt = 'Slide ' + s.number;
        thumb.appendChild(img);
        thumb.appendChild(htmlEl('div', 'thumbnail-index', String(i + 1)));
        item.appendChild(thumb);
        if (onSeek) item.addEventListener('click', () => onSeek(s.timestamp));
        container.appendChild(item);
        this.thumbItems.push(item);
      });
    }

    // Load every slide image once so the first display of a slide does not wait for the network.
    preload() {
      const seen = new Set();
      for (const s of this.data.shapes.slides) {
        if (seen.has(s.src)) continue;
        seen.add(s.src);
        new Image().src = this.fileUrl(s.src);
      }
    }

    draw(t) {
      if (typeof t !== 'number' || !isFinite(t)) return null;
      const d = this.data;
      const st = this.state;

      // Zoom.
      const pz = d.panzooms[currentIndex(d.panzooms, t)];
      const vb = pz ? pz : { x: 0, y: 0, width: 0, height: 0 };
      const vbText = vb.x + ' ' + vb.y + ' ' + vb.width + ' ' + vb.height;
      if (st.viewBox !== vbText) {
        st.viewBox = vbText;
        this.svg.setAttribute('viewBox', vbText);
        this.clipRect.setAttribute('x', vb.x);
        this.clipRect.setAttribute('y', vb.y);
        this.clipRect.setAttribute('width', vb.width);
        this.clipRect.setAttribute('height', vb.height);
      }
      // Slide.
      const slideIndex = currentIndex(d.shapes.slides, t);
      const slide = d.shapes.slides[slideIndex];

      // The whiteboard of a 2.6+ recording: its error screen replaces everything, and while it
      // is not ready the logo stays.
      const board = this.whiteboard ? this.whiteboard.view(t, slide) : null;
      const errorText = board && board.error ? board.error : '';
      if (st.error !== errorText) {
        st.error = errorText;
        this.errorScreen.textContent = errorText;
        this.errorScreen.style.display = errorText ? '' : 'none';
        this.svg.style.display = errorText ? 'none' : '';
      }
      // The logo stays until there is something to show, like the real player.
      this.presentation.classList.toggle('logo', !pz || (board !== null && board.pending));
      const slideKey = slide ? slide.src : '';
      if (st.slide !== slideKey) {
        st.slide = slideKey;
        this.slideGroup.textContent = '';
        if (slide) {
          const img = svgEl('image', { x: 0, y: 0, width: slide.width, height: slide.height });
          img.setAttribute('href', this.fileUrl(slide.src));
          this.slideGroup.appendChild(img);
        }
      }

      // Annotations of the current slide.
      if (board) {
        if (st.canvas !== board.key) {
          st.canvas = board.key;
          this.canvasGroup.textContent = '';
          for (const node of board.nodes()) this.canvasGroup.appendChild(node);
        }
      }
      const shapes = slide && !board ? d.shapes.canvases[slide.imageId] || [] : [];
      const visible = [];
      for (let i = 0; i < shapes.length; i++) {
        const s = shapes[i];
        if (s.timestamp > t) continue;
        if (s.undo !== -1 && !isNaN(s.undo) && s.undo <= t) continue;
        // A later visible draft of the same shape replaces this one.
        const next = shapes[i + 1];
        if (next && next.shape === s.shape && next.timestamp <= t &&
            !(next.undo !== -1 && next.undo <= t)) continue;
        visible.push(i);
      }
      const canvasKey = slideKey + '|' + visible.join(',');
      if (!board && st.canvas !== canvasKey) {
        st.canvas = canvasKey;
        this.canvasGroup.textContent = '';
        for (const i of visible) {
          const s = shapes[i];
          const node = document.importNode(s.node, true);
          node.setAttribute('style', s.style);
          this.canvasGroup.appendChild(node);
        }
      }

      // Cursor: fractions of the current viewBox; -1 -1 (or no event yet) removes the circle.
      const c = d.cursor[currentIndex(d.cursor, t)];
      const show = c && pz && !(c.x === -1 && c.y === -1);
      const cursorKey = show ? (vb.x + c.x * vb.width) + ',' + (vb.y + c.y * vb.height) + ',' + vb.width : '';
      if (st.cursor !== cursorKey) {
        st.cursor = cursorKey;
        if (show) {
          this.cursor.setAttribute('cx', vb.x + c.x * vb.width);
          this.cursor.setAttribute('cy', vb.y + c.y * vb.height);
          this.cursor.setAttribute('r', vb.width / 100);
          if (!this.cursor.parentNode) this.cursorParent.appendChild(this.cursor);
        } else if (this.cursor.parentNode) {
          this.cursor.parentNode.removeChild(this.cursor);
        }
      }

      // Chat: messages up to t are shown; a message with an out= time is hidden from then on.
      const chatIndex = currentIndex(d.chat, t);
      {
        let last = null;
        d.chat.forEach((m, i) => {
          const active = i <= chatIndex && !(m.clear !== -1 && m.clear <= t);
          this.chatItems[i].classList.toggle('inactive', !active);
          if (active) last = this.chatItems[i];
        });
        if (st.chatIndex !== chatIndex && last && this.chatContainer) {
          this.chatContainer.scrollTop = last.offsetTop;
        }
        st.chatIndex = chatIndex;
      }

      // Thumbnails.
      if (st.thumb !== slideIndex) {
        st.thumb = slideIndex;
        this.thumbItems.forEach((item, i) => item.classList.toggle('active', i === slideIndex));
      }

      return { screenshare: inDeskshare(d.deskshare, t), slide: slide ? slide.number : -1 };
    }
  }

  // Fetch a text file; resolves {ok, status, text} and never rejects on HTTP errors.
  function fetchText(url) {
    return fetch(url, { credentials: 'same-origin' }).then(
      r => r.ok ? r.text().then(text => ({ ok: true, status: r.status, text: text }))
        : { ok: false, status: r.status, text: null },
      () => ({ ok: false, status: 0, text: null }));
  }

  function exists(url) {
    return fetch(url, { method: 'HEAD', credentials: 'same-origin' }).then(r => r.ok, () => false);
  }

  window.BBBSampleRender = {
    Renderer: Renderer,
    currentIndex: currentIndex,
    exists: exists,
    fetchText: fetchText,
    formatTime: formatTime,
    inDeskshare: inDeskshare,
    mergeMessages: mergeMessages,
    parseChat: parseChat,
    parseExternalVideos: parseExternalVideos,
    parsePolls: parsePolls,
    parseCursor: parseCursor,
    parseDeskshare: parseDeskshare,
    parseMetadata: parseMetadata,
    parsePanzooms: parsePanzooms,
    parseShapes: parseShapes,
    parseXml: parseXml,
  };
})();
