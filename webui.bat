@echo off
rem Start the web UI: find Python 3.11 and hand over to launch.py (it sets up .venv, then starts app.py; flags pass through).
cd /d "%~dp0"
if not defined PYTHON (
  py -3.11 --version >nul 2>&1 && (set "PYTHON=py -3.11") || (set "PYTHON=python")
)
%PYTHON% launch.py %*
set "WEBUI_EXIT=%ERRORLEVEL%"
rem Keep a double-clicked window open when something went wrong.
if not "%WEBUI_EXIT%"=="0" pause
exit /b %WEBUI_EXIT%
