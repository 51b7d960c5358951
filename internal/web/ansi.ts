// A build's ANSI colours and styles as HTML classes. The Content-Security-Policy refuses style
// attributes, so every look output can ask for is a class of /static/web.css: the 16 colours by
// name, the 256-colour palette by number, a truecolor as the nearest colour of that palette, and
// bold, faint, italic and underline. ansi_up parses the escapes and carries the state across
// chunks; the runs of text are rendered here, escaped.
import { AnsiUp } from "ansi_up";
import { escapeHtml } from "./html.js";

/** A colour as ansi_up hands it over: one of the 16 by class name, or any other as "truecolor". */
interface AnsiColour {
  rgb: number[];
  class_name: string;
}

/** A run of text with the state it is printed in. */
interface Fragment {
  bold: boolean;
  faint: boolean;
  italic: boolean;
  underline: boolean;
  fg: AnsiColour | null;
  bg: AnsiColour | null;
  text: string;
}

/** The levels of xterm's 6×6×6 colour cube (palette entries 16-231). */
const CUBE = [0, 95, 135, 175, 215, 255];

/** The colour of palette entry `n` (16-255): the cube, then 24 greys from 8 to 238. */
export function paletteRgb(n: number): [number, number, number] {
  if (n >= 232) {
    const grey = 8 + 10 * (n - 232);
    return [grey, grey, grey];
  }
  const i = n - 16;
  return [CUBE[Math.floor(i / 36)], CUBE[Math.floor(i / 6) % 6], CUBE[i % 6]];
}

function nearestLevel(v: number): number {
  let best = 0;
  for (let i = 1; i < CUBE.length; i++) if (Math.abs(CUBE[i] - v) < Math.abs(CUBE[best] - v)) best = i;
  return best;
}

const distance = (a: number[], b: number[]) => (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2;

/** The palette entry (16-255) nearest to a colour: the nearest of the cube or of the greys, exact for a palette colour. */
export function nearestPalette(rgb: number[]): number {
  const [r, g, b] = rgb.map(nearestLevel);
  const cube = 16 + 36 * r + 6 * g + b;
  const grey = 232 + Math.min(23, Math.max(0, Math.round(((rgb[0] + rgb[1] + rgb[2]) / 3 - 8) / 10)));
  return distance(paletteRgb(grey), rgb) < distance(paletteRgb(cube), rgb) ? grey : cube;
}

function colourClass(c: AnsiColour, ground: "fg" | "bg"): string {
  return c.class_name === "truecolor" ? `ansi-${nearestPalette(c.rgb)}-${ground}` : `${c.class_name}-${ground}`;
}

function renderFragment(f: Fragment): string {
  if (f.text.length === 0) return "";
  const text = escapeHtml(f.text);
  const classes: string[] = [];
  if (f.fg) classes.push(colourClass(f.fg, "fg"));
  if (f.bg) classes.push(colourClass(f.bg, "bg"));
  if (f.bold) classes.push("ansi-bold");
  if (f.faint) classes.push("ansi-faint");
  if (f.italic) classes.push("ansi-italic");
  if (f.underline) classes.push("ansi-underline");
  return classes.length ? `<span class="${classes.join(" ")}">${text}</span>` : text;
}

/** A converter for one stream of output: colours carry across chunks; classes only, never a style attribute. */
export function ansiConverter(): AnsiUp {
  const a = new AnsiUp();
  a.use_classes = true;
  // ansi_up renders a run with a style attribute for all but the 16 colours: its renderer is replaced by ours.
  (a as unknown as { transform_to_html: (f: Fragment) => string }).transform_to_html = renderFragment;
  return a;
}

/** The 16 colours as the pages show them (ansi_up's class names). */
const NAMED: [string, string][] = [
  ["black", "#3b3b3b"],
  ["red", "#d33"],
  ["green", "#2a2"],
  ["yellow", "#b90"],
  ["blue", "#36c"],
  ["magenta", "#b3b"],
  ["cyan", "#1aa"],
  ["white", "#ccc"],
  ["bright-black", "#777"],
  ["bright-red", "#f66"],
  ["bright-green", "#5d5"],
  ["bright-yellow", "#ed4"],
  ["bright-blue", "#69f"],
  ["bright-magenta", "#e6e"],
  ["bright-cyan", "#5ee"],
  ["bright-white", "#fff"],
];

const hex = (rgb: number[]) => "#" + rgb.map((v) => v.toString(16).padStart(2, "0")).join("");

/** The rules for every class ansiConverter writes. */
export const ANSI_STYLE = [
  ...NAMED.map(([name, colour]) => `.ansi-${name}-fg { color: ${colour}; } .ansi-${name}-bg { background-color: ${colour}; }`),
  ...Array.from({ length: 240 }, (_, i) => {
    const colour = hex(paletteRgb(16 + i));
    return `.ansi-${16 + i}-fg{color:${colour}}.ansi-${16 + i}-bg{background-color:${colour}}`;
  }),
  ".ansi-bold { font-weight: bold; } .ansi-faint { opacity: .7; } .ansi-italic { font-style: italic; } .ansi-underline { text-decoration: underline; }",
].join("\n");
