/**
 * Which simulcast layer a remote video receives: in `auto`, the smallest layer that covers the
 * element's rendered size (picked again when the element or the picture changes size, and when
 * the server reports what arrives); otherwise the layer the viewer chose.
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

/** Keeps one remote video's preferred spatial layer in line with the quality and its element. */
export class LayerSelector {
  readonly count: number;
  readonly #request: (spatialLayer: number) => void;
  readonly #onChange: () => void;
  #quality: Quality;
  #element: HTMLVideoElement | undefined;
  /** The server prefers the top layer until asked otherwise. */
  #requested: number;
  #received: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #resizes: ResizeObserver | undefined;
  readonly #onResize = (): void => this.#settle();

  constructor(options: {
    scalabilityMode: string | undefined;
    quality: Quality;
    /** Asks the server for a preferred spatial layer (`sfu.setConsumerLayers`). */
    request: (spatialLayer: number) => void;
    /** Called when the requested or received layer changed. */
    onChange: () => void;
  }) {
    this.count = spatialLayerCount(options.scalabilityMode);
    this.#request = options.request;
    this.#onChange = options.onChange;
    this.#quality = options.quality;
    this.#requested = this.count - 1;
  }

  get quality(): Quality {
    return this.#quality;
  }

  /** Applies the viewer's choice at once. */
  set quality(quality: Quality) {
    this.#quality = quality;
    this.#apply();
  }

  /** The spatial layer asked of the server. */
  get requestedLayer(): number {
    return this.#requested;
  }

  /** The spatial layer the server forwards (undefined until it says). */
  get receivedLayer(): number | undefined {
    return this.#received;
  }

  /** Follows this element's size from now on (`auto`). */
  observe(element: HTMLVideoElement | undefined): void {
    this.#unobserve();
    this.#element = element;
    if (!element) return;
    element.addEventListener('resize', this.#onResize);
    if (typeof ResizeObserver !== 'undefined') {
      this.#resizes = new ResizeObserver(this.#onResize);
      this.#resizes.observe(element);
    }
    this.#settle();
  }

  /** The server now forwards `spatialLayer` (from `consumer.layersChanged`). */
  onReceived(spatialLayer: number): void {
    this.#received = spatialLayer;
    this.#onChange();
    this.#settle();
  }

  /** The consumer was re-created: the server starts again from the top layer. */
  reset(): void {
    this.#requested = this.count - 1;
    this.#received = undefined;
    this.#apply();
  }

  /** Stops picking (the consumer is gone). */
  close(): void {
    this.#unobserve();
    clearTimeout(this.#timer);
  }

  #unobserve(): void {
    this.#element?.removeEventListener('resize', this.#onResize);
    this.#resizes?.disconnect();
    this.#resizes = undefined;
  }

  #settle(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#apply(), SETTLE_MS);
  }

  #target(): number | undefined {
    const top = this.count - 1;
    if (this.#quality === 'low') return 0;
    if (this.#quality === 'medium') return Math.min(1, top);
    if (this.#quality === 'high') return top;
    const element = this.#element;
    if (!element) return undefined;
    const { videoWidth, videoHeight, clientWidth, clientHeight } = element;
    // The picture's size at the top layer is known only from a frame at a known layer.
    if (this.#received === undefined || videoWidth === 0 || videoHeight === 0) return undefined;
    const ratio = typeof devicePixelRatio === 'number' ? devicePixelRatio : 1;
    const shownPx = Math.min(clientWidth, (clientHeight * videoWidth) / videoHeight) * ratio;
    return fittingLayer(shownPx, videoWidth * 2 ** (top - this.#received), this.count);
  }

  #apply(): void {
    const target = this.#target();
    if (target !== undefined && target !== this.#requested) {
      this.#requested = target;
      this.#request(target);
    }
    this.#onChange();
  }
}
