// While a job runs: Generate gives its place to Interrupt and Skip, the browser tab's title shows the percent;
// when it ends, a short beep (and a browser notification where allowed) if the notification option is on.
// Small images in a gallery are drawn without smoothing. Tooltips name the keyboard shortcuts.
(function () {
    "use strict";
    const RUNNING = new Set(["queued", "running"]);
    const TOOLTIPS = {
        "_generate": "Generate (Ctrl+Enter)",
        "_interrupt": "Stop the job, keeping the image made so far (Esc)",
        "_skip": "Skip the current image of the batch (Alt+Enter)",
    };
    const lastState = new Map();
    const PREFIX = /^\[[^\]]*\] /;  // what this script puts in front of the page's own title
    let notifyWanted = false;

    function beep() {
        const AudioContext = window.AudioContext || window.webkitAudioContext;
        if (!AudioContext) return;
        const audio = new AudioContext();
        const tone = audio.createOscillator();
        const volume = audio.createGain();
        tone.frequency.value = 880;
        volume.gain.setValueAtTime(0.0001, audio.currentTime);
        volume.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
        volume.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.3);
        tone.connect(volume).connect(audio.destination);
        tone.start();
        tone.stop(audio.currentTime + 0.32);
        tone.onended = () => audio.close();
        window.webuiBeeps = (window.webuiBeeps || 0) + 1;
    }

    function notifyDone(state) {
        beep();
        if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
            new Notification("Stable Diffusion web UI", {body: "Job " + state});
        }
    }

    function watchProgress() {
        let title = "";
        for (const bar of document.querySelectorAll(".webui-progress")) {
            const box = bar.closest("[id$='_progress']");
            if (box === null) continue;
            const tab = box.id.slice(0, -"_progress".length);
            const state = bar.dataset.state || "idle";
            const running = RUNNING.has(state);
            const row = document.getElementById(tab + "_toprow");
            if (row !== null) row.classList.toggle("webui-job-running", running);
            if (running && !title) title = bar.dataset.title || "";
            const before = lastState.get(tab);
            if (bar.dataset.notify === "1") notifyWanted = true;
            if (before !== undefined && RUNNING.has(before) && !running && state !== "idle" && bar.dataset.notify === "1") {
                notifyDone(state);
            }
            lastState.set(tab, state);
        }
        const wanted = title + document.title.replace(PREFIX, "");
        if (document.title !== wanted) document.title = wanted;
    }

    function drawSmallImagesSharp() {
        for (const image of document.querySelectorAll(".webui-gallery img")) {
            const small = image.naturalWidth > 0 && image.naturalWidth < image.clientWidth;
            const wanted = small ? "pixelated" : "";
            if (image.style.imageRendering !== wanted) image.style.imageRendering = wanted;
        }
    }

    function addTooltips() {
        for (const [suffix, text] of Object.entries(TOOLTIPS)) {
            for (const button of document.querySelectorAll("button[id$='" + suffix + "']")) {
                if (!button.title) button.title = text;
            }
        }
        for (const box of document.querySelectorAll("[id$='_prompt'] textarea, [id$='_neg_prompt'] textarea")) {
            if (!box.title) box.title = "Ctrl+Up / Ctrl+Down: change the weight of the selected words";
        }
    }

    function onClick(event) {
        const target = event.target instanceof Element ? event.target : null;
        if (target === null) return;
        if (notifyWanted && target.closest("button[id$='_generate']") && "Notification" in window
            && Notification.permission === "default") {
            Notification.requestPermission();
        }
    }

    function onDoubleClick(event) {
        const target = event.target instanceof Element ? event.target : null;
        const gallery = target === null ? null : target.closest(".webui-gallery");
        if (gallery === null || target.tagName !== "IMG") return;
        const button = gallery.querySelector("button[aria-label*='ullscreen'], button[title*='ullscreen']");
        if (button) button.click();
    }

    function tick() {
        watchProgress();
        drawSmallImagesSharp();
        addTooltips();
    }

    setInterval(tick, 250);
    document.addEventListener("click", onClick, true);
    document.addEventListener("dblclick", onDoubleClick, true);
})();
