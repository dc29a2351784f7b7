// A1111's keyboard shortcuts: Ctrl+Enter generates, Alt+Enter skips, Esc interrupts (in the open tab).
(function () {
    "use strict";

    // The elem_id prefix of the generation tab on screen (txt2img, img2img, inpaint), or null.
    function currentTab() {
        for (const row of document.querySelectorAll("[id$='_toprow']")) {
            if (row.offsetParent !== null) return row.id.slice(0, -"_toprow".length);
        }
        return null;
    }

    function press(tab, name) {
        const button = document.getElementById(tab + "_" + name);
        if (button) button.click();
        return button !== null;
    }

    function jobRunning(tab) {
        const row = document.getElementById(tab + "_toprow");
        return row !== null && row.classList.contains("webui-job-running");
    }

    function onKeyDown(event) {
        if (event.key !== "Enter" && event.key !== "Escape") return;
        const tab = currentTab();
        if (tab === null) return;
        let handled = false;
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey) {
            handled = press(tab, "generate");
        } else if (event.key === "Enter" && event.altKey) {
            handled = press(tab, "skip");
        } else if (event.key === "Escape" && jobRunning(tab)) {
            handled = press(tab, "interrupt");
        }
        if (handled) {
            event.preventDefault();
            event.stopPropagation();
        }
    }

    window.addEventListener("keydown", onKeyDown, true);
})();
