; Inno Setup 6 script: ByenatOS for Windows from the PyInstaller bundle (dist\byenatos\).
; Built by `python -m installers build` on Windows, which passes the version and the bundle path:
;   iscc /DAppVersion=0.1.0 /DBundleDir=dist\byenatos /Odist installers\windows\byenatos.iss
; Per-user install by default (no admin prompt); the user may choose all users in the wizard.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\byenatos"
#endif

; byenatosw.exe is the windowed desktop app (no console), byenatos.exe the command line.

[Setup]
AppId={{6B0C5C9E-2F47-4C1B-9E0B-B7E1A2C4D5F6}
AppName=ByenatOS
AppVersion={#AppVersion}
AppPublisher=ByenatOS
AppPublisherURL=https://github.com/byenatos/byenatos
DefaultDirName={autopf}\ByenatOS
DefaultGroupName=ByenatOS
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=ByenatOS-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\byenatosw.exe
UninstallDisplayName=ByenatOS {#AppVersion}
; Quit a running ByenatOS (Restart Manager) before files are replaced or removed.
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "startatlogin"; Description: "Start ByenatOS when I sign in (it waits in the tray)"; GroupDescription: "Start-up:"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\ByenatOS"; Filename: "{app}\byenatosw.exe"; WorkingDir: "{app}"
Name: "{group}\Uninstall ByenatOS"; Filename: "{uninstallexe}"
Name: "{autodesktop}\ByenatOS"; Filename: "{app}\byenatosw.exe"; WorkingDir: "{app}"; Tasks: desktopicon

[Registry]
; Optional start at login: the per-user Run key, removed again by the uninstaller.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "ByenatOS"; ValueData: """{app}\byenatosw.exe"""; Flags: uninsdeletevalue; Tasks: startatlogin

[Run]
Filename: "{app}\byenatosw.exe"; Description: "{cm:LaunchProgram,ByenatOS}"; Flags: nowait postinstall skipifsilent

[Code]
// The uninstaller removes the program. The user's data (models list, personal records, keys in
// Credential Manager) stays unless they ask for it to go: a question, default No.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  DataDir: String;
begin
  if CurUninstallStep = usPostUninstall then
  begin
    DataDir := ExpandConstant('{localappdata}\byenatos');
    if DirExists(DataDir) and (not UninstallSilent()) then
      if MsgBox('Also delete your ByenatOS data (settings, personal records, downloaded models) in ' +
                DataDir + '?' + #13#10 + 'Choose No to keep it for a later install.',
                mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES then
        DelTree(DataDir, True, True, True);
  end;
end;
