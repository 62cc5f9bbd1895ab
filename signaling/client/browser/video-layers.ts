/**
 * Which simulcast layer a remote video receives: in `auto`, the smallest layer that covers the
 * element's rendered size (re-picked when the element or the picture changes size); otherwise
 * the layer the viewer chose. Shows what arrives, and says so when bandwidth holds it lower.
 */

/** The viewer's choice; `auto` fits the element. */
export type Quality = 'auto' | 'low' | 'medium' | 'high';

/** How long sizes and layer notifications settle before `auto` picks again. */
const SETTLE_MS = 300;

/** Spatial layers in a consumer's `scalabilityMode` ("L3T3" → 3); 1 when it has none. */
export function spatialLayerCount(scalabilityMode: string | undefined): number {
  const match = /^[LS](\d+)T\d+/.exec(scalabilityMode ?? '');
  return match ? Number(match[1]) : 1;
}

/**
 * The lowest of `count` layers, each half the width of the next, whose width reaches
 * `neededPx` when the top one is `topWidthPx` wide; the top layer when none does.
 */
export function fittingLayer(neededPx: number, topWidthPx: number, count: number): number {
  for (let layer = 0; layer < count - 1; layer++) {
    if (topWidthPx / 2 ** (count - 1 - layer) >= neededPx) return layer;
  }
  return count - 1;
}

/**
 * Keeps one remote video's preferred layer in line with the viewer's quality choice and the
 * element's size, and writes what it requested and receives into `data-requested-layer`,
 * `data-received-layer` and a status line.
 */
export class VideoLayers {
  readonly #element: HTMLVideoElement;
  readonly #status: HTMLElement;
  readonly #count: number;
  readonly #request: (spatialLayer: number) => void;
  #quality: Quality;
  /** The server prefers the top layer until asked otherwise. */
  #requested: number;
  #received: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #resizes = new ResizeObserver(() => this.#settle());

  constructor(options: {
    element: HTMLVideoElement;
    status: HTMLElement;
    scalabilityMode: string | undefined;
    quality: Quality;
    /** Asks the server for a preferred spatial layer (`sfu.setConsumerLayers`). */
    request: (spatialLayer: number) => void;
  }) {
    this.#element = options.element;
    this.#status = options.status;
    this.#count = spatialLayerCount(options.scalabilityMode);
    this.#request = options.request;
    this.#quality = options.quality;
    this.#requested = this.#count - 1;
    this.#element.dataset.layerCount = String(this.#count);
    this.#element.addEventListener('resize', () => this.#settle());
    this.#resizes.observe(this.#element);
    this.#apply();
  }

  /** Applies the viewer's choice at once. */
  set quality(quality: Quality) {
    this.#quality = quality;
    this.#apply();
  }

  /** The server now forwards `spatialLayer` (from `consumer.layersChanged`). */
  received(spatialLayer: number): void {
    this.#received = spatialLayer;
    this.#render();
    this.#settle();
  }

  /** Something changed size or layer: pick again once sizes and notifications settle. */
  #settle(): void {
    this.#render();
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#apply(), SETTLE_MS);
  }

  /** Stops picking (the consumer is gone). */
  close(): void {
    this.#resizes.disconnect();
    clearTimeout(this.#timer);
  }

  #target(): number | undefined {
    const top = this.#count - 1;
    if (this.#quality === 'low') return 0;
    if (this.#quality === 'medium') return Math.min(1, top);
    if (this.#quality === 'high') return top;
    const { videoWidth, videoHeight, clientWidth, clientHeight } = this.#element;
    // The picture's size at the top layer is known only from a frame at a known layer.
    if (this.#received === undefined || videoWidth === 0 || videoHeight === 0) return undefined;
    const shownPx = Math.min(clientWidth, (clientHeight * videoWidth) / videoHeight) * devicePixelRatio;
    return fittingLayer(shownPx, videoWidth * 2 ** (top - this.#received), this.#count);
  }

  #apply(): void {
    const target = this.#target();
    if (target !== undefined && target !== this.#requested) {
      this.#requested = target;
      this.#request(target);
    }
    this.#render();
  }

  #render(): void {
    const el = this.#element;
    el.dataset.requestedLayer = String(this.#requested);
    if (this.#received === undefined) {
      this.#status.textContent = this.#count > 1 ? 'starting…' : '';
      return;
    }
    el.dataset.receivedLayer = String(this.#received);
    const size = el.videoWidth ? ` ${el.videoWidth}×${el.videoHeight}` : '';
    const limited = this.#received < this.#requested ? ' · limited by bandwidth' : '';
    this.#status.textContent = `${this.#name(this.#received)}${size}${limited}`;
  }

  #name(layer: number): string {
    if (layer === this.#count - 1) return 'High';
    return layer === 0 ? 'Low' : 'Medium';
  }
}
