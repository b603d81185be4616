/*
 * whiteboard.js: the tldraw whiteboard of BBB 2.6+ recordings for the sample 2.3 player: parsing
 * tldraw.json, choosing the renderer the real player would use (tldraw v1 for bbb_version < 3.0.0,
 * v2 from 3.0.0), loading the v2 renderer's fonts from the same CDN URLs as the real player, and the
 * shapes visible at a media time as SVG elements in slide coordinates. render.js draws them.
 *
 * Rules follow docs bbb-playback.md "BBB 2.6+ / 3.0 recordings (tldraw whiteboard)" and
 * bbb-playback 5.1.3 (src/utils/builder.js buildTldraw, src/components/tldraw*, utils/tldraw.js):
 * - entries keyed by the slide number, sorted by their timestamp; the current entry is the last one
 *   whose timestamp <= t, and its shapes are drawn only when its key is the current slide's number;
 * - shapes in file order until the first one after t; one is visible until its undo time (-1 never);
 *   a later record with the same shape id replaces the earlier one;
 * - coordinates are in a 1440x1080 box (2048x1536 for v1 before bbb_version 2.6.1) that the slide
 *   is scaled into: scale = min(box width / slide width, box height / slide height);
 * - v2 loads four fonts and translations/en.json from unpkg when it mounts, showing "Loading
 *   assets..." meanwhile; if a font fails it shows only "Could not load assets. Please refresh the
 *   page." instead of the whiteboard (no slide);
 * - v2 picks up the slide only on the time update after the one that mounted it (the logo stays).
 * Test knobs (from knobs.json, served only by the project's test server): `extraFont` adds a font
 * to load (one that no CDN copy has), `failAt` + `failText` show an error screen from that time.
 */
(function () {
  'use strict';

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ASSETS = 'https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/';
  const FONTS = [
    ['tldraw_draw', 'Shantell_Sans-Normal-SemiBold'],
    ['tldraw_serif', 'IBMPlexSerif-Medium'],
    ['tldraw_sans', 'IBMPlexSans-Medium'],
    ['tldraw_mono', 'IBMPlexMono-Medium'],
  ];
  const ASSET_ERROR = 'Could not load assets. Please refresh the page.';
  const ASSET_LOADING = 'Loading assets...';

  // tldraw v1 and v2 light-theme stroke colours and widths.
  const V1_COLORS = { black: '#1d1d1d', red: '#ff2133', green: '#36b24d', blue: '#4dabf7', orange: '#ff9433', yellow: '#ffc936', violet: '#9e6ffc', white: '#ffffff', gray: '#a2a4ab' };
  const V1_WIDTHS = { small: 4, medium: 6.25, large: 8.5 };
  const V2_COLORS = { black: '#1d1d1d', red: '#e03131', green: '#099268', blue: '#4465e9', orange: '#e16919', yellow: '#f1ac4b', violet: '#ae3ec9', grey: '#adb5bd', 'light-red': '#ff8787', 'light-green': '#40c057', 'light-blue': '#4ba1f1', 'light-violet': '#e085f4' };
  const V2_WIDTHS = { s: 2, m: 3.5, l: 5, xl: 10 };

  // Plain numeric semver comparison (x.y.z; pre-release tags ignored), as semver's gte is used.
  function versionAtLeast(version, min) {
    const parse = (v) => String(v || '').split('-')[0].split('.').map(n => parseInt(n, 10));
    const a = parse(version);
    const b = parse(min);
    if (a.length < 3 || a.some(isNaN)) return false;
    for (let i = 0; i < 3; i++) {
      if (a[i] !== b[i]) return a[i] > b[i];
    }
    return true;
  }

  // tldraw.json: {"bbb_version": "...", "<slide number>": {"shapes": [...], "timestamp": s}, ...}
  function parse(text) {
    if (!text) return [];
    const json = JSON.parse(text);
    const version = json.bbb_version || null;
    const entries = Object.keys(json).filter(k => k !== 'bbb_version').map(k => ({
      id: k,
      timestamp: parseFloat(json[k].timestamp),
      version: version,
      shapes: (json[k].shapes || []).map(s => ({
        timestamp: parseFloat(s.timestamp),
        clear: parseFloat(s.undo),
        shape: s.shape_data,
      })),
    }));
    entries.sort((a, b) => a.timestamp - b.timestamp);
    return entries;
  }

  function svg(name, attrs) {
    const e = document.createElementNS(SVG_NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function pathThrough(points) {
    return points.map((p, i) => (i === 0 ? 'M ' : 'L ') + p[0] + ' ' + p[1]).join(' ');
  }

  // One shape as an SVG element in box coordinates, or null for a type this player does not draw.
  function shapeElement(shape, v2) {
    if (v2) {
      const p = shape.props || {};
      const colour = V2_COLORS[p.color] || V2_COLORS.black;
      const width = V2_WIDTHS[p.size] || V2_WIDTHS.m;
      const style = { fill: 'none', stroke: colour, 'stroke-width': width, 'stroke-linecap': 'round', 'stroke-linejoin': 'round' };
      if (shape.type === 'draw') {
        const pts = [];
        for (const seg of p.segments || []) for (const q of seg.points || []) pts.push([shape.x + q.x, shape.y + q.y]);
        return pts.length ? svg('path', Object.assign({ d: pathThrough(pts) }, style)) : null;
      }
      if (shape.type === 'geo' && p.geo === 'rectangle') {
        return svg('rect', Object.assign({ x: shape.x, y: shape.y, width: p.w, height: p.h }, style));
      }
      return null;
    }
    const st = shape.style || {};
    const colour = V1_COLORS[st.color] || V1_COLORS.black;
    const width = V1_WIDTHS[st.size] || V1_WIDTHS.medium;
    const style = { fill: 'none', stroke: colour, 'stroke-width': width, 'stroke-linecap': 'round', 'stroke-linejoin': 'round' };
    const at = shape.point || [0, 0];
    if (shape.type === 'draw') {
      const pts = (shape.points || []).map(q => [at[0] + q[0], at[1] + q[1]]);
      return pts.length ? svg('path', Object.assign({ d: pathThrough(pts) }, style)) : null;
    }
    if (shape.type === 'rectangle') {
      const size = shape.size || [0, 0];
      return svg('rect', Object.assign({ x: at[0], y: at[1], width: size[0], height: size[1] }, style));
    }
    return null;
  }

  /*
   * new Whiteboard({entries, knobs})
   * view(t, slide) -> {error: text|null, pending: bool, key: string, nodes(): [SVG elements]}
   *   error: the text of the renderer's loading or error screen (tldraw's div.tl-loading), shown
   *     instead of the whiteboard;
   *   pending: nothing to draw yet (v2 fonts loading, or v2 just mounted): the logo stays;
   *   nodes(): the visible shapes, in slide coordinates (a <g> with the box-to-slide scale).
   */
  class Whiteboard {
    constructor(opts) {
      this.entries = opts.entries;
      this.knobs = opts.knobs || {};
      this.fonts = null;
      this.v2Mounted = false;
    }

    // The v2 renderer loads its fonts once, when it first mounts.
    loadFonts() {
      if (this.fonts) return;
      this.fonts = { state: 'loading' };
      const list = FONTS.slice();
      if (this.knobs.extraFont) list.push(['tldraw_extra', this.knobs.extraFont]);
      const loads = list.map(([family, file]) =>
        new FontFace(family, 'url(' + ASSETS + 'fonts/' + file + '.woff2)').load().then(f => document.fonts.add(f)));
      // The translations are loaded too (a failure there is harmless, as in the real player).
      fetch(ASSETS + 'translations/en.json').catch(() => null);
      Promise.all(loads).then(
        () => { this.fonts.state = 'ok'; },
        () => { this.fonts.state = 'failed'; });
    }

    view(t, slide) {
      const knobs = this.knobs;
      if (typeof knobs.failAt === 'number' && t >= knobs.failAt) {
        return { error: knobs.failText || "Something's gone wrong.", pending: false, key: 'fail', nodes: () => [] };
      }
      let index = -1;
      for (let i = 0; i < this.entries.length; i++) if (this.entries[i].timestamp <= t) index = i;
      const entry = index >= 0 ? this.entries[index] : null;
      const v2 = entry !== null && versionAtLeast(entry.version, '3.0.0');
      if (v2) {
        this.loadFonts();
        if (this.fonts.state === 'failed') return { error: ASSET_ERROR, pending: false, key: 'assets', nodes: () => [] };
        if (this.fonts.state === 'loading') return { error: ASSET_LOADING, pending: false, key: 'loading', nodes: () => [] };
        if (!this.v2Mounted) {
          this.v2Mounted = true;
          return { error: null, pending: true, key: 'mounting', nodes: () => [] };
        }
      }
      const bigBox = !v2 && entry !== null && !versionAtLeast(entry.version, '2.6.1');
      const box = bigBox ? [2048, 1536] : [1440, 1080];
      const visible = {};
      const record = {};
      const order = [];
      if (entry && slide && entry.id === String(slide.number)) {
        entry.shapes.every((s, i) => {
          if (s.timestamp > t) return false;
          const cleared = s.clear !== -1 && !isNaN(s.clear) && s.clear <= t;
          if (!cleared && s.shape) {
            if (!(s.shape.id in visible)) order.push(s.shape.id);
            visible[s.shape.id] = s.shape;
            record[s.shape.id] = i;
          }
          return true;
        });
      }
      const ids = order;
      const key = (v2 ? 'v2' : 'v1') + '|' + (slide ? slide.src : '') + '|' + ids.map(id => record[id]).join(',');
      return {
        error: null,
        pending: false,
        key: key,
        nodes: () => {
          if (!slide) return [];
          const scale = Math.min(box[0] / slide.width, box[1] / slide.height);
          const g = svg('g', { class: 'whiteboard ' + (v2 ? 'tldraw-v2' : 'tldraw-v1'), transform: 'scale(' + (1 / scale) + ')' });
          for (const id of ids) {
            const e = shapeElement(visible[id], v2);
            if (e) g.appendChild(e);
          }
          return [g];
        },
      };
    }
  }

  window.BBBSampleWhiteboard = {
    ASSET_ERROR: ASSET_ERROR,
    Whiteboard: Whiteboard,
    parse: parse,
    versionAtLeast: versionAtLeast,
  };
})();
